"""Results over seeds: mean and spread of rank-k and mAP, and the mean CMC with its band
(the Table 2 study runs every variant on several seeds of data and initialisation).

A seed run is a report run (reid.evaluation.report.make_run); aggregate() turns the runs of
one variant into one run whose result dicts hold the means, with the sample standard
deviations (ddof 1) beside them ("ranks_std", "mAP_std", "cmc_std"), which the text table
and plots.plot_cmc already draw as the spread.
"""
import numpy as np

from .protocols import EvaluationInputError
from .report import make_run

SUMMARY_RANKS = ("1", "5", "20")


def _by_protocol(run):
    return {(res["protocol"], res.get("dataset")): res for res in run["results"]}


def aggregate(name, runs, **meta):
    """One run: per protocol the mean over `runs` of rank-k, mAP and the CMC (cut to the
    shortest gallery), their standard deviations, and the per-seed values."""
    if not runs:
        raise ValueError("aggregate: no runs for %s" % name)
    keys = list(_by_protocol(runs[0]))
    results = []
    for key in keys:
        per = [_by_protocol(r).get(key) for r in runs]
        if any(p is None for p in per):
            raise ValueError("aggregate: %s lacks protocol %s in some seeds" % (name, key))
        ranks = sorted(per[0]["ranks"], key=int)
        r = np.array([[p["ranks"][k] for k in ranks] for p in per])
        m = np.array([p["mAP"] for p in per])
        n = min(len(p["cmc"]) for p in per)
        c = np.array([p["cmc"][:n] for p in per])
        ddof = 1 if len(runs) > 1 else 0
        res = {k: v for k, v in per[0].items() if k not in ("ranks", "mAP", "cmc",
                                                            "per_query")}
        res.update(ranks=dict(zip(ranks, r.mean(0).tolist())),
                   ranks_std=dict(zip(ranks, r.std(0, ddof=ddof).tolist())),
                   mAP=float(m.mean()), mAP_std=float(m.std(ddof=ddof)),
                   cmc=c.mean(0).tolist(), cmc_std=c.std(0, ddof=ddof).tolist(),
                   seeds=len(runs), per_seed={"ranks": r.tolist(), "mAP": m.tolist()})
        results.append(res)
    return make_run(name, results, **meta)


def run_seed(run):
    """The seed a run records (the demo's meta.seed, a study run's meta.settings.seed)."""
    meta = run.get("meta", {})
    return meta.get("seed", (meta.get("settings") or {}).get("seed"))


def over_seeds(run_lists, sources):
    """Runs read from several files (one seed each, e.g. `tools/demo.py --seed s`) as one
    aggregated row per run name, in order of first appearance. A name found in only one
    file has no spread to report: an error naming that file."""
    groups, where = {}, {}
    for runs, source in zip(run_lists, sources):
        for r in runs:
            groups.setdefault(r["name"], []).append(r)
            where.setdefault(r["name"], []).append(str(source))
    lonely = {n: w for n, w in where.items() if len(w) < 2}
    if lonely:
        raise EvaluationInputError("over seeds: %s" % "; ".join(
            "run %r is only in %s" % (n, w[0]) for n, w in lonely.items()))
    return [aggregate(n, rs, seeds=[run_seed(r) for r in rs], sources=where[n])
            for n, rs in groups.items()]


def summary_line(run, protocol, ranks=SUMMARY_RANKS):
    """'R1 a +- s | R5 ... | mAP ...' in percent for one aggregated run and protocol."""
    res = next(r for r in run["results"] if r["protocol"] == protocol)
    cells = ["R%s %5.1f +- %4.1f" % (k, 100 * res["ranks"][k], 100 * res["ranks_std"][k])
             for k in ranks if k in res["ranks"]]
    cells.append("mAP %5.1f +- %4.1f" % (100 * res["mAP"], 100 * res["mAP_std"]))
    return " | ".join(cells)
