"""The steps of the synthetic studies (tools/demo.py: the ALL net; tools/table2.py: the six
variants of Table 2): generate and prepare a synthetic MARS, write a small net, train it,
score it, write its reports and figures. Each step prints what it does and the stand-alone
command that does the same, and reuses what an earlier run with the same settings made.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from reid import run as runs
from reid.nets.config import SMALL, SMALL_SCHEDULE, VARIANTS, NetConfig

# The data of the studies, measured on the 2-core machine (docs/TABLE2.md): 40 identities
# (20 test, rank-1 chance about 5 %) and SMALL_SCHEDULE's 600 iterations take a few minutes.
DATA = dict(identities=40, seed=1, difficulty=0.5)
# CI size: a few iterations on a handful of identities, short tracklets; checks plumbing only.
TINY = dict(identities=10, iters=6, batch_triplets=2, max_len=12)


class PipelineError(RuntimeError):
    """A step cannot run (missing input of a skipped step, failed tool); message says why."""


class Steps:
    """Numbered step headers with wall times, so a long run shows where it is."""

    def __init__(self, names):
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


def sizes(identities=None, iters=None, batch_triplets=None, tiny=False):
    """Identities, iterations and B of a study: those asked for, else the CI size (tiny) or
    DATA and SMALL_SCHEDULE."""
    base = TINY if tiny else dict(DATA, iters=SMALL_SCHEDULE.max_iter,
                                  batch_triplets=SMALL_SCHEDULE.batch_triplets)
    return dict(identities=identities or base["identities"], iters=iters or base["iters"],
                batch_triplets=batch_triplets or base["batch_triplets"])


def add_study_options(p):
    """The options demo and Table 2 share (argparse parser p): data, sizes, schedule, reuse."""
    d = sizes()
    p.add_argument("--identities", type=int, default=None,
                   help="synthetic identities, half train, half test (default %d; --tiny %d)"
                   % (d["identities"], TINY["identities"]))
    p.add_argument("--iters", type=int, default=None, help="training iterations (default "
                   "%d; --tiny %d)" % (d["iters"], TINY["iters"]))
    p.add_argument("--seed", type=int, default=DATA["seed"],
                   help="seed of the dataset and of training (default %(default)d)")
    p.add_argument("--batch-triplets", type=int, default=None,
                   help="B triplets per iteration (default %d)" % d["batch_triplets"])
    p.add_argument("--lr", type=float, default=SMALL_SCHEDULE.base_lr,
                   help="base learning rate (default %(default)g)")
    p.add_argument("--difficulty", type=float, default=DATA["difficulty"],
                   help="synthetic data difficulty, 0..1 (default %(default)g)")
    p.add_argument("--degrade-prob", type=float, default=None,
                   help="share of degraded frames (occlusion, blur, ...; default from "
                        "difficulty: 0.05 + 0.2 x difficulty)")
    p.add_argument("--tiny", action="store_true",
                   help="CI size: %(identities)d identities, %(iters)d iterations, B=%("
                        "batch_triplets)d (checks the plumbing, not learning)" % TINY)
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted training from its last snapshot")
    p.add_argument("--fresh", action="store_true", help="redo every step")
    p.add_argument("-k", type=int, default=100, help="eq. 2 re-scored list length")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# ---- data ---------------------------------------------------------------------------------
def synthetic_argv(source, settings):
    """data_prep/make_synthetic.py arguments for the generation settings."""
    argv = ["--layout", "mars", "--out", str(source)]
    for key, value in sorted(settings.items()):
        argv += ["--" + key.replace("_", "-"), str(value)]
    return argv


def prepare_data(data_dir, settings, steps, progress=True):
    """Steps generate and prep: the synthetic MARS layout, prepared with the real tools
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
                raise PipelineError("generating %s failed" % source)
        except ValueError as e:                 # bad settings, e.g. too few identities
            raise PipelineError("generating %s: %s" % (source, e)) from None
        stamp.write_text(json.dumps(settings, indent=1, sort_keys=True))
    steps.start("prep", "frame LMDB + tracklet index with the MARS prep tool",
                "bin/python data_prep/prep_mars.py %s %s" % (rel(source), rel(prepared)))
    if (prepared / "index.json").is_file() and (prepared / "frames.lmdb").exists():
        steps.note("reusing %s" % rel(prepared))
    else:
        argv = [str(source), str(prepared)] + ([] if progress else ["--no-progress"])
        if prep_main("mars", argv) != 0:
            raise PipelineError("preparing %s failed (see the message above)" % source)
    return str(prepared)


# ---- nets and training ----------------------------------------------------------------------
def net_config(prepared, variant, seed, batch_triplets):
    """The small net of one Table-2 variant (same layer types as the paper net)."""
    return NetConfig(size=SMALL, variant=VARIANTS[variant], data_source=str(Path(prepared)),
                     batch_triplets=batch_triplets, seed=seed)


def write_run_nets(cfg, run_dir, iters, lr, steps):
    """Step nets: the run's prototxts, SMALL_SCHEDULE scaled to `iters` at base_lr `lr`; an
    old run of other settings is cleared first."""
    run_dir = Path(run_dir)
    settings = {"variant": cfg.variant.name, "size": cfg.size.name, "seed": cfg.seed,
                "batch_triplets": cfg.batch_triplets, "iters": iters, "lr": lr,
                "data_source": cfg.data_source}
    stamp = run_dir / "run.json"
    v = cfg.variant
    steps.start("nets", "small %s net (temporal %s, metric %s), B = %d triplets, seed %d" % (
        v.label, v.temporal, v.metric or "none", cfg.batch_triplets, cfg.seed))
    if run_dir.exists() and (not stamp.is_file()
                             or json.loads(stamp.read_text()) != settings):
        if stamp.is_file():
            steps.note("settings changed: clearing the old run in %s" % rel(run_dir))
        shutil.rmtree(run_dir)
    nets = runs.write_nets(cfg, str(run_dir), SMALL_SCHEDULE.scaled(iters, lr))
    stamp.write_text(json.dumps(settings, indent=1, sort_keys=True))
    steps.note("wrote %s" % ", ".join(rel(p) for p in sorted(nets.values())))
    return nets


def train_run(nets, run_dir, iters, steps, resume=False, progress=True, init=None):
    """Step train: `bin/caffe train -solver [-weights init]` (reid.run.train_or_resume).
    Returns (weights, TrainLog, whether training ran)."""
    solver = nets["solver"]
    w = "" if not init else " -weights %s" % rel(init)
    steps.start("train", "%d iterations%s" % (iters, ", from %s" % rel(init) if init else ""),
                "bin/python tools/train.py %s%s   (or bin/caffe train -solver %s%s)"
                % (rel(solver), w.replace(" -", " --"), rel(solver), w))
    try:
        weights, log, trained = runs.train_or_resume(run_dir, solver, iters, resume, progress,
                                                     steps.note, weights=init)
    except RuntimeError as e:                   # TrainingDiverged, a failed caffe
        raise PipelineError(str(e)) from None
    if not trained:
        steps.note("reusing the finished training %s" % rel(weights))
    return weights, log, trained


# ---- scoring and outputs --------------------------------------------------------------------
def score(prepared, cfg, nets, weights, k=100, progress=True):
    """Step evaluate (reid.evaluation.score.score_run). Returns (open dataset, Scored)."""
    from reid.datasets import open_dataset
    from reid.evaluation.score import score_run
    dataset = open_dataset(prepared)
    return dataset, score_run(dataset, cfg.variant, nets, weights, k, progress=progress)


def write_outputs(out_dir, scored, dataset, log, cfg, meta, degraded=None, title=None):
    """results.txt/.csv/.json, cmc.png (official and common protocol), ranked_list.png,
    attention.png (with a TAM), losses.png (with a log); returns (run dict, paths)."""
    from reid.evaluation import diagnostics, plots, protocols, report
    out_dir, name = Path(out_dir), cfg.variant.label
    run = report.make_run(name, scored.results, **dict(scored.meta, **meta))
    paths = report.write_reports(run, out_dir, "results", title=title)
    curves = plots.cmc_curves([run], protocols.MARS_OFFICIAL)
    curves += [(lbl + " (common variant)", c, s)
               for lbl, c, s in plots.cmc_curves([run], protocols.MARS_COMMON)]
    paths["cmc"] = plots.plot_cmc(curves, out_dir / "cmc.png", title=title)
    paths["ranked_list"] = out_dir / "ranked_list.png"
    plots.scored_ranked_lists(dataset, scored, plots.pick_queries(scored), paths["ranked_list"])
    if "attention" in scored.features:
        tid, kinds = diagnostics.pick_attention_tracklet(dataset, scored, degraded or {},
                                                         cfg.seq_len)
        marks = "" if not kinds else "; degraded: " + ", ".join(
            "%d %s" % (i + 1, k) for i, k in enumerate(kinds) if k)
        paths["attention"] = out_dir / "attention.png"
        plots.scored_attention(dataset, scored, tid, paths["attention"], cfg.seq_len,
                               title="TAM weights w_t,i (eq. 3), query %s%s"
                               % (dataset.tracklets[tid].source, marks))
    if log is not None and log.outputs:
        paths["losses"] = out_dir / "losses.png"
        plots.plot_losses(log, paths["losses"], title="%s training losses" % name)
    return run, paths


def study_meta(dataset, scored, degraded, cfg, **meta):
    """The run metadata of a synthetic study: its settings plus the diagnostics."""
    from reid.evaluation import diagnostics
    return dict(meta, feature_spread=diagnostics.feature_spread(scored),
                attention_on_degraded=diagnostics.attention_on_degraded(
                    dataset, scored, degraded, cfg.seq_len))


def clear_output(out, marks):
    """--fresh: delete an output folder, but only one that the tool wrote (one of the files
    `marks` is there; never, say, a checkout passed as --out by mistake)."""
    out = Path(out)
    if not out.exists():
        return
    if not any((out / m).exists() for m in marks) or (out / ".git").exists():
        raise SystemExit("--fresh: %s does not look like an output folder of this tool; "
                         "delete it yourself" % out)
    shutil.rmtree(out)
