"""Table 3 of the paper in one run (paper 4.3, Table 3; docs/DESIGN.md §5).

ALL is trained on MARS (or taken from a given caffemodel), fine-tuned from that model on each
of the ten splits of iLIDS-VID and of PRID2011 (on the split's training persons only, paper
4.3), and the three are scored with their protocols (MARS: the official kit; iLIDS-VID and
PRID2011: cam1 / cam_a probes against cam2 / cam_b, mean ± std over the splits). The outcome
is one Table-3-shaped row beside the paper's (reid.evaluation.paper).

Output folder:
    data/<dataset>/source, data/<dataset>/<dataset>   synthetic layout and its prepared LMDB
    mars/run/                  the MARS training (nets, snapshots/, train.log)
    mars/results.*, cmc.png    MARS official kit + common variant
    <dataset>/split<k>/        the fine-tuning on split k (nets with split_index k)
    <dataset>/results.*, cmc.png   every split, mean ± std
    table3.txt/.csv/.json      our row and the paper's
    table3_cmc.png             the three CMC curves (bands: ± std over splits), paper points

Every step is reused when its output exists for the same settings: a finished split is
skipped, an interrupted one continues from its last snapshot. Each step prints the
stand-alone command that does the same thing.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from reid import pipeline
from reid import run as runs
from reid.evaluation import paper
from reid.nets.config import SCHEDULES, SIZES, VARIANTS, NetConfig

VARIANT = VARIANTS["all"]
TWO_CAMERA = ("ilidsvid", "prid2011")
DATASETS = ("mars",) + TWO_CAMERA
NAMES = {"mars": "MARS", "ilidsvid": "iLIDS-VID", "prid2011": "PRID2011"}
STEPS = ("generate", "prep", "train MARS", "fine-tune iLIDS-VID", "fine-tune PRID2011",
         "evaluate", "table")
# Synthetic data of the default run: 40 identities each (MARS: 20 train / 20 test; iLIDS-VID
# 20 / 20 per split; PRID2011: 36 in the splits, 18 / 18).
IDENTITIES = 40
# CI size: every step on a handful of identities, a few iterations; plumbing only.
TINY = dict(identities=8, mars_iters=4, finetune_iters=3, batch_triplets=2, max_len=10)
TABLE_RANKS = paper.RANKS


class Table3Error(RuntimeError):
    """A step cannot run; the message says why (and names the file)."""


@dataclass
class Plan:
    """What one Table 3 run does. schedules: {dataset: reid.nets.config.Schedule}."""
    out: Path
    size: str = "small"
    data: Path | None = None            # prepared DIR/<dataset> folders; None: synthetic
    identities: int = IDENTITIES
    difficulty: float = 0.5
    seed: int = 1
    splits: tuple = tuple(range(10))
    schedules: dict = field(default_factory=dict)
    mars_weights: str | None = None     # a trained MARS model instead of training one
    init_weights: str | None = None     # what the MARS training starts from (ImageNet CaffeNet)
    k: int = 100
    max_len: int | None = None          # synthetic tracklet length cap (tiny runs)
    progress: bool = True

    @classmethod
    def build(cls, out, size="small", mars_iters=None, finetune_iters=None, lr=None,
              batch_triplets=None, tiny=False, **kw):
        """The committed schedules of `size` (SCHEDULES), with any override; tiny: the CI
        size (TINY)."""
        if size not in SIZES:
            raise Table3Error("--size must be one of %s" % ", ".join(SIZES))
        if tiny:
            kw.setdefault("identities", TINY["identities"])
            kw.setdefault("max_len", TINY["max_len"])
            mars_iters = mars_iters or TINY["mars_iters"]
            finetune_iters = finetune_iters or TINY["finetune_iters"]
            batch_triplets = batch_triplets or TINY["batch_triplets"]
        schedules = {}
        for d in DATASETS:
            s = SCHEDULES[size][d]
            iters = mars_iters if d == "mars" else finetune_iters
            if iters or lr:
                s = s.scaled(iters or s.max_iter, lr)
            if batch_triplets:
                s = replace(s, batch_triplets=batch_triplets)
            schedules[d] = s
        return cls(Path(out).resolve(), size, schedules=schedules, **kw)

    def settings(self):
        """Everything that decides the results (the reuse stamp of the whole run)."""
        return {"size": self.size, "data": str(self.data) if self.data else "synthetic",
                "identities": self.identities, "difficulty": self.difficulty,
                "seed": self.seed, "splits": list(self.splits), "k": self.k,
                "max_len": self.max_len, "mars_weights": self.mars_weights,
                "init_weights": self.init_weights,
                "schedules": {d: vars(s) for d, s in self.schedules.items()}}


# ---- data -------------------------------------------------------------------------------------
def prepare(plan, steps):
    """{dataset: prepared folder}: the given DIR/<dataset> folders, or synthetic data made
    and prepared with the real tools (reid.pipeline.prepare_data)."""
    if plan.data is not None:
        out = {}
        for d in DATASETS:
            folder = Path(plan.data) / d
            if not (folder / "index.json").is_file():
                raise Table3Error("%s: no prepared %s there (index.json); prepare it with "
                                  "bin/python data_prep/prep_%s.py SRC %s"
                                  % (folder, NAMES[d], d, folder))
            out[d] = str(folder)
        return out
    out = {}
    for d in DATASETS:
        settings = pipeline.data_settings(plan.identities, plan.seed, plan.difficulty,
                                          plan.max_len)
        out[d] = pipeline.prepare_data(plan.out / "data" / d, settings, steps,
                                       progress=plan.progress, layout=d)
    return out


# ---- nets and training --------------------------------------------------------------------------
def net_config(plan, dataset, prepared, split=None):
    """The ALL net of `plan.size` on one dataset (split: which of the ten it trains on)."""
    return NetConfig(size=SIZES[plan.size], variant=VARIANT, data_source=str(prepared),
                     batch_triplets=plan.schedules[dataset].batch_triplets, seed=plan.seed,
                     split_index=split)


def train_command(solver, weights=None):
    return "bin/python tools/train.py %s%s" % (
        pipeline.rel(solver), " --weights %s" % pipeline.rel(weights) if weights else "")


def train_mars(plan, prepared, steps):
    """The MARS model: --mars-weights, or ALL trained on MARS (from plan.init_weights)."""
    schedule = plan.schedules["mars"]
    run_dir = plan.out / "mars" / "run"
    cfg = net_config(plan, "mars", prepared)
    if plan.mars_weights:
        steps.start("train MARS", "given: %s" % plan.mars_weights)
        if not os.path.isfile(plan.mars_weights):
            raise Table3Error("--mars-weights %s: file not found" % plan.mars_weights)
        nets = pipeline.write_nets_step(cfg, run_dir, schedule, steps, "mars", header=False)
        return nets, plan.mars_weights
    steps.start("train MARS", "ALL, %d iterations, B = %d, base_lr %g%s" % (
        schedule.max_iter, schedule.batch_triplets, schedule.base_lr,
        ", from %s" % plan.init_weights if plan.init_weights else ""),
        "%s && %s" % (pipeline.generate_nets_command("mars", cfg, schedule, run_dir),
                      train_command(run_dir / "solver.prototxt", plan.init_weights)))
    nets = pipeline.write_nets_step(cfg, run_dir, schedule, steps, "mars",
                                    init_weights=plan.init_weights, header=False)
    weights, log, _ = pipeline.train_run(nets, run_dir, schedule.max_iter, steps,
                                         resume=True, progress=plan.progress,
                                         weights=plan.init_weights, header=False)
    return nets, weights


def finetune(plan, dataset, prepared, mars_weights, steps):
    """One fine-tuning from the MARS model per split (paper 4.3), each on its own training
    persons (split_index); returns (deploy nets, weights template with "{split}")."""
    schedule = plan.schedules[dataset]
    root = plan.out / dataset
    template_dir = root / "split$k"
    cfg0 = net_config(plan, dataset, prepared, plan.splits[0])
    steps.start("fine-tune %s" % NAMES[dataset], "%d splits x %d iterations from the MARS "
                "model, B = %d, base_lr %g" % (len(plan.splits), schedule.max_iter,
                                               schedule.batch_triplets, schedule.base_lr),
                "for k in %s: %s && %s" % (
                    " ".join(str(s) for s in plan.splits),
                    pipeline.generate_nets_command(dataset, cfg0, schedule, template_dir).replace(
                        "--split %d" % plan.splits[0], "--split $k"),
                    train_command(template_dir / "solver.prototxt", mars_weights)))
    nets = None
    for i, split in enumerate(plan.splits):
        run_dir = root / ("split%d" % split)
        cfg = net_config(plan, dataset, prepared, split)
        split_nets = pipeline.write_nets_step(cfg, run_dir, schedule, steps, dataset,
                                              init_weights=str(mars_weights), header=False)
        nets = nets or split_nets
        final = runs.snapshots(str(run_dir), "caffemodel").get(schedule.max_iter)
        if final:
            steps.note("split %d (%d/%d): finished, skipped (%s)"
                       % (split, i + 1, len(plan.splits), pipeline.rel(final)))
            continue
        steps.note("split %d (%d/%d): %s" % (split, i + 1, len(plan.splits),
                                             pipeline.rel(run_dir)))
        pipeline.train_run(split_nets, run_dir, schedule.max_iter, steps, resume=True,
                           progress=plan.progress, weights=str(mars_weights), header=False)
    weights = str(root / "split{split}" / "snapshots" / (
        "snap_iter_%d.caffemodel" % schedule.max_iter))
    return nets, weights


# ---- evaluation ----------------------------------------------------------------------------------
def evaluate(plan, dataset, prepared, nets, weights, steps):
    """Score one dataset with its protocol into <out>/<dataset>/results.* and cmc.png;
    reused when the weights have not changed since. Returns the run dict."""
    from reid.datasets import open_dataset
    from reid.evaluation import plots, report
    from reid.evaluation.score import SPLIT_FIELD, score_run
    out = plan.out / dataset
    splits = list(plan.splits) if dataset in TWO_CAMERA else None
    files = ([weights.replace(SPLIT_FIELD, str(s)) for s in splits] if splits else [weights])
    stamp = {"weights": files, "mtimes": [os.path.getmtime(f) for f in files], "k": plan.k,
             "splits": splits}
    stamp_path, done = out / "evaluation.json", out / "results.json"
    steps.note("%s: %s" % (NAMES[dataset], evaluate_command(prepared, nets, weights, out,
                                                            splits)))
    if (done.is_file() and stamp_path.is_file()
            and json.loads(stamp_path.read_text()) == stamp):
        steps.note("reusing %s (same weights)" % pipeline.rel(done))
        return report.load_json(done)[0]
    if plan.size == "paper":             # paper-size features of MARS want the GPU
        import caffe
        caffe.set_mode_gpu()
    with open_dataset(prepared) as ds:
        scored = score_run(ds, VARIANT, nets, weights, plan.k, splits=splits,
                           progress=plan.progress)
    run = report.make_run(VARIANT.label, scored.results, **dict(scored.meta, weights=weights))
    title = "ALL (%s nets) on %s" % (plan.size, NAMES[dataset])
    report.write_reports(run, out, "results", title=title)
    plots.plot_cmc([("%s, %s" % (VARIANT.label, report.group_title(res)), res["cmc"],
                     res.get("cmc_std")) for res in scored.results], out / "cmc.png",
                   title=title)
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return run


def evaluate_command(prepared, nets, weights, out, splits):
    """tools/evaluate.py for the same scoring (plus its ranked lists and attention plots)."""
    return ("bin/python tools/evaluate.py --dataset %s --run %s --weights '%s' --out %s%s"
            % (pipeline.rel(prepared), pipeline.rel(os.path.dirname(nets["deploy_features"])),
               pipeline.rel(weights), pipeline.rel(out) + "/eval",
               " --splits %s" % ",".join(map(str, splits)) if splits and
               list(splits) != list(range(10)) else ""))


# ---- the table --------------------------------------------------------------------------------
def our_row(runs_by_dataset, name):
    """One run with Table 3's column groups: each two-camera dataset's mean over the splits
    and MARS's official kit (the common variant stays in mars/results.*)."""
    from reid.evaluation.protocols import MARS_OFFICIAL, TWO_CAMERA_SPLITS
    want = {"ilidsvid": TWO_CAMERA_SPLITS, "prid2011": TWO_CAMERA_SPLITS,
            "mars": MARS_OFFICIAL}
    results = [next(res for res in runs_by_dataset[d]["results"] if res["protocol"] == want[d])
               for d in paper.TABLE3_ORDER]
    meta = {d: runs_by_dataset[d]["meta"] for d in paper.TABLE3_ORDER}
    return {"name": name, "meta": meta, "results": results}


def write_table(plan, runs_by_dataset, seconds=None):
    """table3.txt/.csv/.json (our row and the paper's) and table3_cmc.png; returns paths."""
    from reid.evaluation import plots, report
    ours = our_row(runs_by_dataset, "ALL (ours)")
    data = "synthetic data" if plan.data is None else str(plan.data)
    title = ("Table 3: ALL, %s nets, %s; fine-tuned from MARS on each of %d splits"
             % (plan.size, data, len(plan.splits)))
    paths = report.write_reports([ours, paper.table3_run()], plan.out, "table3",
                                 ranks=TABLE_RANKS, title=title)
    with open(paths["table"], "a") as f:
        f.write("ALL (paper): %s, Table 3.\n" % paper.CITATION)
    curves, reference = [], {}
    for res, d in zip(ours["results"], paper.TABLE3_ORDER):
        label = report.group_title(res)
        curves.append((label, res["cmc"], res.get("cmc_std")))
        reference[label] = ("paper, %s" % NAMES[d], paper.table3_points(d))
    paths["cmc"] = plots.plot_cmc(curves, plan.out / "table3_cmc.png", reference=reference,
                                  title="ALL (%s nets): CMC on the three datasets" % plan.size)
    return paths


# ---- the whole run ------------------------------------------------------------------------------
def run(plan):
    """Every step, each reused where already done; returns (table paths, seconds)."""
    plan.out.mkdir(parents=True, exist_ok=True)
    stamp = plan.out / "table3_settings.json"
    stamp.write_text(json.dumps(plan.settings(), indent=1))
    steps = pipeline.Steps(STEPS)
    prepared = prepare(plan, steps)
    mars_nets, mars_weights = train_mars(plan, prepared["mars"], steps)
    tuned = {d: finetune(plan, d, prepared[d], mars_weights, steps) for d in TWO_CAMERA}
    steps.start("evaluate", "MARS official kit + common variant; iLIDS-VID, PRID2011 over "
                "%d splits (eq. 2, top k = %d)" % (len(plan.splits), plan.k))
    done = {"mars": evaluate(plan, "mars", prepared["mars"], mars_nets, mars_weights, steps)}
    for d in TWO_CAMERA:
        done[d] = evaluate(plan, d, prepared[d], *tuned[d], steps)
    steps.start("table", "our row beside the paper's",
                "bin/python tools/compare_runs.py %s --out %s   (without the paper's row)"
                % (" ".join(pipeline.rel(plan.out / d / "results.json")
                            for d in paper.TABLE3_ORDER), pipeline.rel(plan.out / "compare")))
    paths = write_table(plan, done)
    return paths, steps.done()

