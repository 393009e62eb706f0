#!/usr/bin/env python
"""`make demo`: the main job end to end on a small synthetic MARS (paper 4.1-4.2, Table 2).

    bin/python tools/demo.py [--out out/demo] [--identities 40] [--iters 600] [--seed 1]
                             [--resume] [--until STEP] [--fresh] [--tiny]

Steps, each printing the stand-alone command that does the same thing:

  1 generate  a synthetic MARS-layout dataset    data_prep/make_synthetic.py --layout mars
  2 prep      its frame LMDB + tracklet index    data_prep/prep_mars.py SRC OUT
  3 nets      the small ALL net (TAM + SRM)      reid.experiment.write_nets
  4 train     `bin/caffe train -solver ...`      tools/train.py SOLVER (or bin/caffe train)
  5 evaluate  MARS official kit + common variant, eq. 2 re-scoring; results.txt/.csv/.json,
              cmc.png (Fig. 9), ranked_list.png (Fig. 10), attention.png (Fig. 1),
              losses.png                         tools/evaluate.py --dataset ... --run ...

Everything goes into --out. Re-running reuses what is already there and was made with the
same settings (data, prepared LMDB, finished training); --resume continues an interrupted
training from its last snapshot; --fresh starts over. tools/table2.py runs the same steps
for all six variants of Table 2 (it imports the helpers below).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")   # Caffe's per-layer set-up log

import numpy as np  # noqa: E402

from reid import experiment  # noqa: E402
from reid.nets.config import SMALL, TABLE2_LABELS, VARIANTS, NetConfig  # noqa: E402
from reid.nets.generate import SMALL_SCHEDULE  # noqa: E402

STEPS = ("generate", "prep", "nets", "train", "evaluate")
# Measured on the 2-core machine (docs/TABLE2.md): 40 identities (20 test, rank-1 chance
# about 5 %) and 600 iterations of the small ALL net take a few minutes. lr 3e-4, not
# SMALL_SCHEDULE's 3e-3: at 3e-3 the LSTM of the TAM saturates within ~100 iterations and
# F collapses to one point (triplet loss stuck at the margin), see docs/TABLE2.md.
DEFAULTS = dict(identities=40, iters=600, seed=1, batch_triplets=4, difficulty=0.5, lr=3e-4)
# CI size: a few iterations on a handful of identities, short tracklets; checks plumbing only.
TINY = dict(identities=10, iters=6, batch_triplets=2, max_len=12)
SNAP_RE = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)$")


class DemoError(RuntimeError):
    """A step cannot run (missing input of a skipped step, failed tool); message says why."""


# ---- progress -----------------------------------------------------------------------------
class Steps:
    """Numbered step headers with wall times, so a long run shows where it is."""

    def __init__(self, names=STEPS):
        self.names, self.t0, self.times, self._cur = names, time.time(), {}, None

    def start(self, name, what, command=None):
        self._end()
        self._cur = (name, time.time())
        i = self.names.index(name) + 1 if name in self.names else "-"
        print("\n[%s/%d] %s: %s" % (i, len(self.names), name, what), flush=True)
        if command:
            print("      stand-alone: %s" % command, flush=True)

    def note(self, text):
        print("      " + text, flush=True)

    def _end(self):
        if self._cur:
            name, t = self._cur
            self.times[name] = round(time.time() - t, 1)
            print("      (%s: %.0f s)" % (name, self.times[name]), flush=True)
            self._cur = None

    def done(self):
        self._end()
        return round(time.time() - self.t0, 1)


def rel(path):
    """A path as the user would type it from the checkout (relative when inside it)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def duration(seconds):
    return "%.0f s" % seconds if seconds < 120 else "%.1f min" % (seconds / 60)


# ---- steps 1-2: data ------------------------------------------------------------------------
def synthetic_argv(source, settings):
    """data_prep/make_synthetic.py arguments for the generation settings."""
    argv = ["--layout", "mars", "--out", str(source)]
    for key, value in sorted(settings.items()):
        argv += ["--" + key.replace("_", "-"), str(value)]
    return argv


def prepare_data(data_dir, settings, steps, progress=True):
    """Steps 1-2: generate the synthetic MARS layout and prepare it with the real tools
    (reid.datasets.cli, what data_prep/make_synthetic.py and prep_mars.py run); both are
    reused when data_dir already holds them for the same settings. Returns the prepared
    folder."""
    from reid.datasets.cli import prep_main, synthetic_main
    data_dir = Path(data_dir)
    source, prepared = data_dir / "source", data_dir / "mars"
    stamp = data_dir / "settings.json"
    same = stamp.is_file() and json.loads(stamp.read_text()) == settings
    argv = synthetic_argv(source, settings)
    steps.start("generate", "synthetic MARS-layout dataset (%s)" % ", ".join(
        "%s=%s" % kv for kv in sorted(settings.items())),
        "bin/python data_prep/make_synthetic.py " + " ".join(
            rel(a) if a == str(source) else a for a in argv))
    if same and (source / "synthetic_meta.json").is_file():
        steps.note("reusing %s (same settings)" % rel(source))
    else:
        if stamp.exists():
            stamp.unlink()
        if prepared.exists():
            shutil.rmtree(prepared)
        try:
            if synthetic_main(argv) != 0:
                raise DemoError("generating %s failed" % source)
        except ValueError as e:                 # bad settings, e.g. too few identities
            raise DemoError("generating %s: %s" % (source, e)) from None
        stamp.write_text(json.dumps(settings, indent=1, sort_keys=True))
    steps.start("prep", "frame LMDB + tracklet index with the MARS prep tool",
                "bin/python data_prep/prep_mars.py %s %s" % (rel(source), rel(prepared)))
    if (prepared / "index.json").is_file() and (prepared / "frames.lmdb").exists():
        steps.note("reusing %s" % rel(prepared))
    else:
        argv = [str(source), str(prepared)] + ([] if progress else ["--no-progress"])
        if prep_main("mars", argv) != 0:
            raise DemoError("preparing %s failed (see the message above)" % source)
    return str(prepared)


def chance_rank1(dataset, draws=50):
    """Rank-1 of random rankings under the official protocol (mean of draws) and
    1 / number of test identities, the two readings of 'chance'."""
    from reid.evaluation import protocols
    test = dataset.gallery_idx
    pos = {int(t): i for i, t in enumerate(test)}
    q = np.array([pos[int(t)] for t in dataset.query_idx])
    rng = np.random.default_rng(0)
    r1 = [protocols.evaluate_mars_official(rng.random((q.size, test.size)), dataset.pids[test],
                                           dataset.cams[test], q)["ranks"]["1"]
          for _ in range(draws)]
    n_ids = len({int(p) for p in dataset.pids[test] if p > 0})
    return {"random_rankings": float(np.mean(r1)), "one_over_test_ids": 1.0 / n_ids,
            "test_identities": n_ids, "queries": int(q.size), "gallery": int(test.size)}


# ---- steps 3-4: nets and training -------------------------------------------------------------
def net_config(prepared, variant, seed, batch_triplets):
    """The small net of one Table-2 variant (same layer types as the paper net)."""
    return NetConfig(size=SMALL, variant=VARIANTS[variant], data_source=str(Path(prepared)),
                     batch_triplets=batch_triplets, seed=seed)


def schedule(iters, lr):
    """SMALL_SCHEDULE scaled to `iters`: lr drops x0.1 after 2/3, about 5 snapshots, a loss
    reading every ~1/30 of the run."""
    return dict(SMALL_SCHEDULE, max_iter=iters, base_lr=lr, stepsize=max(1, 2 * iters // 3),
                snapshot=max(1, iters // 5), display=max(1, min(20, iters // 30)))


def snapshots(run_dir, kind):
    """{iteration: path} of the run's snapshots of one kind (caffemodel / solverstate)."""
    out = {}
    for p in glob.glob(os.path.join(run_dir, "snapshots", "*." + kind)):
        m = SNAP_RE.search(p)
        if m:
            out[int(m.group(1))] = p
    return out


def parse_logs(paths):
    """The losses of one or more `caffe train` logs (a resumed run has several), in order."""
    readings = []                 # (iteration, output name, value)
    for path in paths:
        part, it = [], 0
        for line in open(path, errors="replace"):
            m = experiment.ITER_RE.search(line)
            if m and "solver.cpp" in line:
                it = int(m.group(1))
            m = experiment.OUTPUT_RE.search(line)
            if m:
                part.append((it, m.group(1), float(m.group(2))))
        if part:                  # a resumed part repeats the snapshot's iteration: keep it once
            readings = [r for r in readings if r[0] < part[0][0]] + part
    log = experiment.TrainLog()
    for it, name, value in readings:
        log.add(it, name, value)
    return log


def train_logs(run_dir):
    """The run's logs, oldest first: train.log.1, train.log.2, ... (resumed parts), train.log."""
    parts = sorted(glob.glob(os.path.join(run_dir, "train.log.*")),
                   key=lambda p: int(p.rsplit(".", 1)[1]))
    last = os.path.join(run_dir, "train.log")
    return parts + ([last] if os.path.isfile(last) else [])


def write_run_nets(cfg, run_dir, iters, lr, steps):
    """Step 3: the run's prototxts; an old run of other settings is cleared first."""
    run_dir = Path(run_dir)
    settings = {"variant": cfg.variant.name, "size": cfg.size.name, "seed": cfg.seed,
                "batch_triplets": cfg.batch_triplets, "iters": iters, "lr": lr,
                "data_source": cfg.data_source}
    stamp = run_dir / "run.json"
    v = cfg.variant
    steps.start("nets", "small %s net (temporal %s, metric %s), B = %d triplets, seed %d" % (
        TABLE2_LABELS[v.name], v.temporal, v.metric or "none", cfg.batch_triplets, cfg.seed))
    if run_dir.exists() and (not stamp.is_file()
                             or json.loads(stamp.read_text()) != settings):
        if stamp.is_file():
            steps.note("settings changed: clearing the old run in %s" % rel(run_dir))
        shutil.rmtree(run_dir)
    nets = experiment.write_nets(cfg, str(run_dir), schedule(iters, lr))
    stamp.write_text(json.dumps(settings, indent=1, sort_keys=True))
    steps.note("wrote %s" % ", ".join(rel(p) for p in sorted(nets.values())))
    return nets


def train_run(nets, run_dir, iters, steps, resume=False, progress=True):
    """Step 4: `bin/caffe train -solver` (reid.experiment.train); a finished run is reused,
    an interrupted one continues from its last snapshot with resume. Returns (weights,
    TrainLog, whether training ran)."""
    run_dir = str(run_dir)
    solver = nets["solver"]
    steps.start("train", "%d iterations" % iters,
                "bin/python tools/train.py %s   (or bin/caffe train -solver %s)"
                % (rel(solver), rel(solver)))
    final = snapshots(run_dir, "caffemodel").get(iters)
    if final:
        steps.note("reusing the finished training %s" % rel(final))
        return final, parse_logs(train_logs(run_dir)), False
    states = snapshots(run_dir, "solverstate")
    snapshot = None
    if states and resume:
        it = max(states)
        snapshot = states[it]
        steps.note("resuming from iteration %d (%s)" % (it, rel(snapshot)))
        n = len(train_logs(run_dir))
        if os.path.isfile(os.path.join(run_dir, "train.log")):
            os.replace(os.path.join(run_dir, "train.log"),
                       os.path.join(run_dir, "train.log.%d" % n))
    else:
        if states:
            steps.note("an interrupted training (up to iteration %d) is restarted; pass "
                       "--resume to continue it instead" % max(states))
        shutil.rmtree(os.path.join(run_dir, "snapshots"), ignore_errors=True)
        for p in train_logs(run_dir):
            os.remove(p)
    steps.note("log: %s" % rel(os.path.join(run_dir, "train.log")))
    try:
        experiment.train(solver, os.path.join(run_dir, "train.log"), iters, snapshot=snapshot,
                         progress=progress)
    except experiment.TrainingDiverged as e:
        raise DemoError(str(e)) from None
    except RuntimeError as e:
        raise DemoError(str(e)) from None
    final = snapshots(run_dir, "caffemodel").get(iters)
    if not final:
        raise DemoError("training ended without %s/snapshots/*_iter_%d.caffemodel"
                        % (run_dir, iters))
    return final, parse_logs(train_logs(run_dir)), True


# ---- step 5: evaluation -----------------------------------------------------------------------
def score(prepared, cfg, nets, weights, k=100, lam=1.0, progress=True):
    """The scoring of reid.experiment.evaluate (features, rank_variant, official + common
    protocols), keeping the rankings for the figures. Returns (dataset, Scored)."""
    from reid.datasets import open_dataset
    dataset = open_dataset(prepared)
    models = experiment.load_models(nets, weights, bool(cfg.variant.metric))
    scored = experiment.score_mars(dataset, TABLE2_LABELS[cfg.variant.name], models, k, lam,
                                   progress=progress)
    return dataset, scored


def degraded_frames(source_dir):
    """{tracklet source ('bbox_test/0001/0001C1T0001'): {frame number: degradation}} from
    the generator's ground truth (synthetic_meta.json)."""
    from reid.datasets.synthetic import load_meta
    out = {}
    for t in load_meta(source_dir)["tracklets"]:
        key = os.path.splitext(t["files"][0])[0].rsplit("F", 1)[0]
        out[key] = {int(f): d for f, d in t["degraded"].items()}
    return out


def attention_on_degraded(dataset, scored, degraded, seq_len):
    """How the TAM weights (eq. 3, mean over the T steps) treat degraded frames: over the
    first T-frame chunk of every test tracklet that mixes clean and degraded frames, the
    mean weight of a degraded and of a clean frame, times T (1 = uniform). None without a
    TAM."""
    if "attention" not in scored.features:
        return None
    on_bad, on_good, n = [], [], 0
    for row, tid in enumerate(scored.tids):
        t = dataset.tracklets[int(tid)]
        deg = degraded.get(t.source, {})
        pos = dataset.positions(int(tid), 0, seq_len)
        bad = np.array([t.frames[p] in deg for p in pos])
        if bad.all() or not bad.any():
            continue
        w = scored.features["attention"][row].mean(0)
        on_bad.append(w[bad].mean() * seq_len)
        on_good.append(w[~bad].mean() * seq_len)
        n += 1
    if not n:
        return {"tracklets": 0}
    return {"tracklets": n, "degraded_x_T": float(np.mean(on_bad)),
            "clean_x_T": float(np.mean(on_good)),
            "degraded_lower_share": float(np.mean(np.array(on_bad) < np.array(on_good)))}


def feature_spread(scored):
    """Mean pairwise distance of the L2-normalised test features F (0 = collapsed to a point,
    ~1.41 = orthogonal): a collapsed feature model is visible here before in the ranks."""
    from reid.evaluation import rerank
    d = rerank.euclidean_distance(scored.features["F"], scored.features["F"])
    n = d.shape[0]
    return float(d.sum() / max(1, n * (n - 1)))


def pick_attention_tracklet(dataset, scored, degraded, seq_len):
    """A query whose first T frames mix clean and degraded ones (occlusion preferred), so
    that the attention plot shows whether the TAM down-weights them; else the first query."""
    queries = [int(t) for t in scored.lists[0]["query"]]
    best = None
    for tid in queries:
        t = dataset.tracklets[tid]
        kinds = [degraded.get(t.source, {}).get(t.frames[p]) for p in
                 dataset.positions(tid, 0, seq_len)]
        n_bad = sum(k is not None for k in kinds)
        if 0 < n_bad < seq_len:
            score = (2 if "occlusion" in kinds else 1, -abs(n_bad - 2))
            if best is None or score > best[0]:
                best = (score, tid, kinds)
    if best is None:
        return queries[0], None
    return best[1], best[2]


def pick_queries(scored, n=3):
    """Queries for the ranked list: a success, a middling one and a failure where there are
    such (official protocol first-match rank), so the figure is not cherry-picked."""
    res = scored.results[0]
    q = np.asarray(res["per_query"]["query_idx"])
    first = np.asarray(res["per_query"]["first_match_rank"], float)
    ap = np.asarray(res["per_query"]["ap"], float)
    tids = scored.lists[0]["query"]
    order = np.lexsort((-ap, first))          # best first
    picks = [order[0], order[len(order) // 2], order[-1]][:n]
    assert q.size == tids.size, "per-query results and queries differ"
    return [int(tids[i]) for i in dict.fromkeys(int(i) for i in picks)]


def write_outputs(out_dir, name, scored, dataset, log, cfg, meta, degraded=None,
                  title=None):
    """results.txt/.csv/.json, cmc.png, ranked_list.png, attention.png, losses.png."""
    from reid.evaluation import plots, protocols, report
    out_dir = Path(out_dir)
    run = report.make_run(name, scored.results, **dict(scored.meta, **meta))
    paths = report.write_reports(run, out_dir, "results", title=title)
    curves = plots.cmc_curves([run], protocols.MARS_OFFICIAL)
    curves += [(lbl + " (common variant)", c, s)
               for lbl, c, s in plots.cmc_curves([run], protocols.MARS_COMMON)]
    paths["cmc"] = plots.plot_cmc(curves, out_dir / "cmc.png", title=title)
    paths["ranked_list"] = out_dir / "ranked_list.png"
    experiment.ranked_list_figure(dataset, scored, pick_queries(scored), paths["ranked_list"])
    if "attention" in scored.features:
        tid, kinds = pick_attention_tracklet(dataset, scored, degraded or {}, cfg.seq_len)
        marks = "" if not kinds else "; degraded: " + ", ".join(
            "%d %s" % (i + 1, k) for i, k in enumerate(kinds) if k)
        paths["attention"] = out_dir / "attention.png"
        experiment.attention_figure(dataset, scored, tid, paths["attention"], cfg.seq_len,
                                    title="TAM weights w_t,i (eq. 3), query %s%s"
                                    % (dataset.tracklets[tid].source, marks))
    if log is not None and log.outputs:
        paths["losses"] = out_dir / "losses.png"
        experiment.plot_losses(log, str(paths["losses"]), title="%s training losses" % name)
    return run, paths


def clear_output(out, marks=("data/settings.json", "run/run.json", "summary.json",
                                "table2_settings.json")):
    """--fresh: delete an output folder, but only one that this tool wrote (never, say, a
    checkout passed as --out by mistake)."""
    out = Path(out)
    if not out.exists():
        return
    if not any((out / m).exists() for m in marks) or (out / ".git").exists():
        raise SystemExit("--fresh: %s does not look like an output folder of tools/demo.py "
                         "or tools/table2.py; delete it yourself" % out)
    shutil.rmtree(out)


# ---- the demo ---------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument("--identities", type=int, default=None,
                   help="synthetic identities, half train, half test (default %d; --tiny %d)"
                   % (DEFAULTS["identities"], TINY["identities"]))
    p.add_argument("--iters", type=int, default=None, help="training iterations (default "
                   "%d; --tiny %d)" % (DEFAULTS["iters"], TINY["iters"]))
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help="seed of the dataset and of training (default 1)")
    p.add_argument("--batch-triplets", type=int, default=None,
                   help="B triplets per iteration (default %d)" % DEFAULTS["batch_triplets"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="base learning rate")
    p.add_argument("--difficulty", type=float, default=DEFAULTS["difficulty"],
                   help="synthetic data difficulty, 0..1 (default 0.5)")
    p.add_argument("--degrade-prob", type=float, default=None,
                   help="share of degraded frames (occlusion, blur, ...; default from "
                        "difficulty: 0.05 + 0.2 x difficulty)")
    p.add_argument("--tiny", action="store_true",
                   help="CI size: %(identities)d identities, %(iters)d iterations, B=%("
                        "batch_triplets)d (checks the plumbing, not learning)" % TINY)
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted training from its last snapshot")
    p.add_argument("--fresh", action="store_true", help="redo every step")
    p.add_argument("--until", choices=STEPS, default=STEPS[-1], help="stop after this step")
    p.add_argument("-k", type=int, default=100, help="eq. 2 re-scored list length")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    base = TINY if a.tiny else DEFAULTS
    identities = a.identities or base["identities"]
    iters = a.iters or base["iters"]
    B = a.batch_triplets or base.get("batch_triplets", DEFAULTS["batch_triplets"])
    settings = {"identities": identities, "seed": a.seed, "difficulty": a.difficulty}
    if a.degrade_prob is not None:
        settings["degrade_prob"] = a.degrade_prob
    if a.tiny:
        settings["max_len"] = TINY["max_len"]
    out = a.out.resolve()
    if a.fresh:
        clear_output(out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not a.quiet
    steps = Steps()
    print("demo: small ALL net (TAM + SRM, paper 3) on synthetic MARS; output in %s" % rel(out))
    try:
        prepared = prepare_data(out / "data", settings, steps, progress=progress)
        if a.until in ("generate", "prep"):
            steps.done()
            return 0
        cfg = net_config(prepared, "all", a.seed, B)
        run_dir = out / "run"
        nets = write_run_nets(cfg, run_dir, iters, a.lr, steps)
        if a.until == "nets":
            steps.done()
            return 0
        weights, log, _ = train_run(nets, run_dir, iters, steps, a.resume, progress)
        if log.outputs:
            experiment.plot_losses(log, str(out / "losses.png"), title="ALL training losses")
        if a.until == "train":
            steps.done()
            return 0
        steps.start("evaluate", "MARS official kit + common variant (eq. 2, top k = %d)" % a.k,
                    "bin/python tools/evaluate.py --dataset %s --run %s --weights %s"
                    % (rel(prepared), rel(run_dir), rel(weights)))
        dataset, scored = score(prepared, cfg, nets, weights, a.k, progress=progress)
        chance = chance_rank1(dataset)
        degraded = degraded_frames(out / "data" / "source")
        att = attention_on_degraded(dataset, scored, degraded, cfg.seq_len)
        meta = {"identities": identities, "seed": a.seed, "iterations": iters,
                "batch_triplets": B, "base_lr": a.lr, "difficulty": a.difficulty,
                "weights": rel(weights), "chance": chance, "feature_spread": feature_spread(scored),
                "attention_on_degraded": att}
        title = "ALL (small net), synthetic MARS: %d identities, %d iterations, seed %d" % (
            identities, iters, a.seed)
        run, paths = write_outputs(out, "ALL", scored, dataset, None, cfg, meta,
                                   degraded, title)
        if log.outputs:
            paths["losses"] = out / "losses.png"
        dataset.close()
        total = steps.done()
    except DemoError as e:
        steps.done()
        print("\ndemo: %s" % e, file=sys.stderr)
        return 1
    summary = {"seconds": total, "steps": steps.times, "outputs": {
        k: rel(v) for k, v in paths.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n" + paths["table"].read_text(), end="")
    print("Chance: rank-1 %.1f %% for random rankings (1 / %d test identities = %.1f %%); "
          "%d queries, gallery of %d tracklets."
          % (100 * chance["random_rankings"], chance["test_identities"],
             100 * chance["one_over_test_ids"], chance["queries"], chance["gallery"]))
    if att and att.get("tracklets"):
        print("TAM: over %d test tracklets with degraded frames, a degraded frame gets %.2f x "
              "and a clean one %.2f x the uniform weight 1/T."
              % (att["tracklets"], att["degraded_x_T"], att["clean_x_T"]))
    print("\nFinished in %s. Outputs in %s:" % (duration(total), rel(out)))
    for kind, path in sorted(paths.items()):
        print("  %-12s %s" % (kind, rel(path)))
    print(rel(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
