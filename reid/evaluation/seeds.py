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


# ---- paired comparisons -----------------------------------------------------------------
# Two variants trained on the same seed share its data, pretraining and test set, so their
# difference per seed removes the seed's difficulty (which dominates the unpaired std).
def per_seed(runs, protocol, metric="1"):
    """{seed: value in %} of rank-`metric` (a rank as a string) or "mAP" under `protocol`."""
    out = {}
    for r in runs:
        res = next((x for x in r["results"] if x["protocol"] == protocol), None)
        if res is None:
            raise EvaluationInputError("per_seed: run %r has no %s result"
                                       % (r["name"], protocol))
        out[run_seed(r)] = 100 * (res["mAP"] if metric == "mAP" else res["ranks"][metric])
    return out


def interval(values, level=0.95):
    """Mean, sample std and the two-sided Student-t interval of the mean of `values`."""
    from scipy import stats
    v = np.asarray(values, float)
    if v.size < 2:
        raise ValueError("interval: need at least two values, got %d" % v.size)
    mean, std = float(v.mean()), float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1)) * std / np.sqrt(v.size)
    return dict(mean=mean, std=std, low=mean - half, high=mean + half, n=int(v.size))


CLAIM_WORDS = ("holds", "reversed", "not separated")     # better - worse
SIGN_WORDS = ("above 0", "below 0", "not separated")     # any difference


def verdict(iv, words=CLAIM_WORDS):
    """words[0] when the interval lies above 0, words[1] below 0, else words[2]."""
    return words[0] if iv["low"] > 0 else words[1] if iv["high"] < 0 else words[2]


def differences(by_seed, words=CLAIM_WORDS):
    """{seed: difference} as a comparison: the differences in seed order, interval(), the
    seeds where it is above 0 ("wins") and verdict()."""
    seeds = sorted(by_seed)
    diffs = [by_seed[s] for s in seeds]
    iv = interval(diffs)
    return dict(iv, seeds=seeds, diffs=diffs, wins=sum(d > 0 for d in diffs),
                verdict=verdict(iv, words))


def paired(better, worse, protocol, metric="1", words=CLAIM_WORDS):
    """better - worse per common seed (percentage points), as differences()."""
    a, b = per_seed(better, protocol, metric), per_seed(worse, protocol, metric)
    return differences({s: a[s] - b[s] for s in set(a) & set(b)}, words)


def paired_line(label, p, width=34):
    """One text line of a paired comparison: per-seed differences, mean [95 % interval],
    wins and verdict."""
    return "%-*s %-20s %+6.1f [%+6.1f, %+6.1f]  %d/%d  %s" % (
        width, label, " ".join("%+5.1f" % d for d in p["diffs"]), p["mean"], p["low"],
        p["high"], p["wins"], len(p["diffs"]), p["verdict"])
