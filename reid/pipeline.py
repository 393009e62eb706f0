"""The steps of the synthetic studies (tools/demo.py: the ALL net; tools/table2.py: the six
variants of Table 2): generate and prepare a synthetic MARS, write a small net, train it,
score it, write its reports and figures. Each step prints what it does and the stand-alone
command that does the same, and reuses what an earlier run with the same settings made.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

from reid import run as runs
from reid.nets.config import SMALL, SMALL_SCHEDULE, VARIANTS, NetConfig
from reid.outputs import OutputError, is_empty, make_dir, mark, remove_owned

OVERWRITE = "--overwrite"       # the option that lets a study replace folders it did not write

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
    p.add_argument("--fresh", action="store_true",
                   help="redo every step (deletes --out, if this tool wrote it)")
    p.add_argument(OVERWRITE, action="store_true",
                   help="replace output folders (--out, its data/ and run folders) even "
                        "when they carry no marker that this project wrote them")
    p.add_argument("-k", type=int, default=100, help="eq. 2 re-scored list length")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# ---- data ---------------------------------------------------------------------------------
def data_settings(identities, seed, difficulty, max_len=None):
    """The generator settings of a synthetic MARS (what its reuse stamp records); a study
    adds its phenomena switches (reid.study.Study.data_settings)."""
    settings = {"identities": identities, "seed": seed, "difficulty": difficulty}
    if max_len:
        settings["max_len"] = max_len
    return settings


def synthetic_argv(source, settings, layout="mars"):
    """data_prep/make_synthetic.py arguments for the generation settings."""
    argv = ["--layout", layout, "--out", str(source)]
    for key, value in sorted(settings.items()):
        argv += ["--" + key.replace("_", "-"), str(value)]
    return argv


def replace_owned(folder, overwrite):
    """Delete a folder this project wrote before rewriting it (reid.outputs); one it did
    not write only with --overwrite, else PipelineError naming it."""
    try:
        remove_owned(folder, OVERWRITE, force=overwrite)
    except OutputError as e:
        raise PipelineError(str(e)) from None


def prepare_data(data_dir, settings, steps, progress=True, layout="mars",
                 overwrite=False):
    """Steps generate and prep: a synthetic dataset in `layout` (MARS, iLIDS-VID or
    PRID2011), prepared with the real tools (reid.datasets.cli, what
    data_prep/make_synthetic.py and prep_<layout>.py run) into data_dir/<layout>; both are
    reused when data_dir already holds them for the same settings. Returns the prepared
    folder."""
    from reid.datasets.cli import prep_main, synthetic_main
    from reid.evaluation.report import DATASET_NAMES
    data_dir, name = Path(data_dir), DATASET_NAMES[layout]
    source, prepared = data_dir / "source", data_dir / layout
    stamp = data_dir / "settings.json"
    same = stamp.is_file() and json.loads(stamp.read_text()) == settings
    argv = synthetic_argv(source, settings, layout)
    steps.start("generate", "synthetic %s-layout dataset (%s)" % (name, ", ".join(
        "%s=%s" % kv for kv in sorted(settings.items()))),
        "bin/python data_prep/make_synthetic.py " + " ".join(
            rel(a) if a == str(source) else a for a in argv))
    if same and (source / "synthetic_meta.json").is_file():
        steps.note("reusing %s (same settings)" % rel(source))
    else:
        replace_owned(prepared, overwrite)
        replace_owned(source, overwrite)
        if stamp.exists():
            stamp.unlink()
        try:
            if synthetic_main(argv) != 0:
                raise PipelineError("generating %s failed" % source)
        except ValueError as e:                 # bad settings, e.g. too few identities
            raise PipelineError("generating %s: %s" % (source, e)) from None
        stamp.write_text(json.dumps(settings, indent=1, sort_keys=True))
    steps.start("prep", "frame LMDB + tracklet index with the %s prep tool" % name,
                "bin/python data_prep/prep_%s.py %s %s" % (layout, rel(source), rel(prepared)))
    if (prepared / "index.json").is_file() and (prepared / "frames.lmdb").exists():
        steps.note("reusing %s" % rel(prepared))
    else:
        argv = [str(source), str(prepared)] + ([] if progress else ["--no-progress"])
        if prep_main(layout, argv) != 0:
            raise PipelineError("preparing %s failed (see the message above)" % source)
    return str(prepared)


# ---- nets and training ----------------------------------------------------------------------
def net_config(prepared, variant, seed, batch_triplets):
    """The small net of one Table-2 variant (same layer types as the paper net)."""
    return NetConfig(size=SMALL, variant=VARIANTS[variant], data_source=str(Path(prepared)),
                     batch_triplets=batch_triplets, seed=seed)


def write_run_nets(cfg, run_dir, iters, lr, steps, overwrite=False):
    """Step nets of the synthetic studies: SMALL_SCHEDULE scaled to `iters` at base_lr `lr`
    (write_nets_step)."""
    schedule = replace(SMALL_SCHEDULE.scaled(iters, lr), batch_triplets=cfg.batch_triplets)
    return write_nets_step(cfg, run_dir, schedule, steps, overwrite=overwrite)


def write_nets_step(cfg, run_dir, schedule, steps, dataset="mars", init_weights=None,
                    header=True, overwrite=False):
    """Step nets: the run's prototxts (reid.run.write_nets, with `schedule`); an old run of
    other settings (run.json) is cleared first if this project wrote it (reid.outputs; else
    only with `overwrite`), one of the same settings is kept with its snapshots. header: print the step and the tools/generate_nets.py command."""
    from dataclasses import asdict
    run_dir = Path(run_dir)
    settings = json.loads(json.dumps({"net": asdict(cfg), "schedule": asdict(schedule),
                                      "init_weights": init_weights}, sort_keys=True))
    stamp = run_dir / "run.json"
    v = cfg.variant
    if header:
        steps.start("nets", "%s %s net (temporal %s, metric %s), B = %d triplets, seed %d"
                    % (cfg.size.name, v.label, v.temporal, v.metric or "none",
                       cfg.batch_triplets, cfg.seed),
                    generate_nets_command(dataset, cfg, schedule, run_dir))
    if run_dir.exists() and (not stamp.is_file()
                             or json.loads(stamp.read_text()) != settings):
        if stamp.is_file():
            steps.note("settings changed: clearing the old run in %s" % rel(run_dir))
        replace_owned(run_dir, overwrite)
    nets = runs.write_nets(cfg, str(run_dir), schedule)
    mark(run_dir, "pipeline")                    # its snapshots may be cleared on a restart
    stamp.write_text(json.dumps(settings, indent=1, sort_keys=True))
    if header:
        steps.note("wrote %s" % ", ".join(rel(p) for p in sorted(nets.values())))
    return nets


def generate_nets_command(dataset, cfg, schedule, run_dir):
    """The tools/generate_nets.py command that writes the same nets as write_nets_step."""
    from reid.nets.generate import run_argv
    try:
        argv = run_argv(dataset, cfg, schedule, run_dir, Path(run_dir) / "snapshots")
    except ValueError:                # settings no option spells (e.g. another mining mode)
        return "reid.run.write_nets (no tools/generate_nets.py options for these settings)"
    return "bin/python tools/generate_nets.py " + " ".join(
        rel(a) if os.path.isabs(a) else a for a in argv)


def train_run(nets, run_dir, iters, steps, resume=False, progress=True, weights=None,
              header=True):
    """Step train: `bin/caffe train -solver` (reid.run.train_or_resume), from `weights`
    unless it resumes. Returns (weights, TrainLog, whether training ran)."""
    solver = nets["solver"]
    if header:
        steps.start("train", "%d iterations" % iters,
                    "bin/python tools/train.py %s%s   (or bin/caffe train -solver ...)"
                    % (rel(solver), " --weights %s" % rel(weights) if weights else ""))
    try:
        out, log, trained = runs.train_or_resume(run_dir, solver, iters, resume, progress,
                                                 steps.note, weights=weights)
    except (RuntimeError, ValueError) as e:     # diverged, stopped early, failed; bad run folder
        raise PipelineError(str(e)) from None
    if not trained:
        steps.note("reusing the finished training %s" % rel(out))
    return out, log, trained


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


def open_output(out, tool, fresh=False, overwrite=False):
    """The study's output folder: with --fresh first deleted (only if this tool wrote it, or
    with --overwrite); created and marked as the project's when new or empty."""
    out = Path(out)
    if fresh:
        replace_owned(out, overwrite)
    new = not out.exists() or is_empty(out)
    try:
        make_dir(out)
    except OutputError as e:
        raise PipelineError(str(e)) from None
    if new:
        mark(out, tool)
    return out
