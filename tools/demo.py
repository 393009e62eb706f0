#!/usr/bin/env python
"""`make demo`: the main job end to end on a small synthetic MARS (paper 4.1-4.2, Table 2).

    bin/python tools/demo.py [--out out/demo] [--identities 40] [--iters 600] [--seed 1]
                             [--resume] [--until STEP] [--fresh] [--tiny]

Steps, each printing the stand-alone command that does the same thing:

  1 generate  a synthetic MARS-layout dataset    data_prep/make_synthetic.py --layout mars
              (every phenomenon of reid.study on: corruptions, misalignment, pose, cues)
  2 prep      its frame LMDB + tracklet index    data_prep/prep_mars.py SRC OUT
  3 pretrain  the trunk as an identity classifier on a disjoint pool (reid.pretrain), the
              stand-in for ImageNet CaffeNet
  4 nets      the small ALL net (TAM + SRM)      reid.run.write_nets
  5 train     `bin/caffe train -solver ... -weights PRETRAINED`
                                                 tools/train.py SOLVER --weights PRETRAINED
  6 evaluate  MARS official kit + common variant, eq. 2 re-scoring; results.txt/.csv/.json,
              cmc.png (Fig. 9), ranked_list.png (Fig. 10), attention.png (Fig. 1),
              losses.png                         tools/evaluate.py --dataset ... --run ...
              and whether the metric branch learned (final metric loss against ln 2, the
              SRM's AUC over all test pairs)

Everything goes into --out. Re-running reuses what is already there and was made with the
same settings (data, prepared LMDB, finished training); --resume continues an interrupted
training from its last snapshot; --fresh starts over. The steps are reid.pipeline's, which
tools/table2.py runs for all six variants of Table 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")   # Caffe's per-layer set-up log

from reid import pipeline as P  # noqa: E402
from reid import study as S  # noqa: E402

STEPS = ("generate", "prep", "pretrain", "nets", "train", "evaluate")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    P.add_study_options(p)
    p.add_argument("--until", choices=STEPS, default=STEPS[-1], help="stop after this step")
    return p.parse_args(argv)


def study_of(a, s):
    """The demo as a one-seed, one-variant reid.study.Study (its data and pretraining)."""
    from dataclasses import replace
    base = S.SMALL_STUDY if a.tiny else S.Study()
    return replace(base, seeds=(a.seed,), variants=("all",), identities=s["identities"],
                   iters=s["iters"], batch_triplets=s["batch_triplets"], lr=a.lr,
                   difficulty=a.difficulty)


def train(a, s, out, steps, progress):
    """Steps 1-5; returns (prepared, cfg, nets, start, weights, log), or None after --until."""
    from reid.pretrain import start_weights
    study = study_of(a, s)
    settings = study.data_settings(a.seed)
    if a.degrade_prob is not None:
        settings["degrade_prob"] = a.degrade_prob
    prepared = P.prepare_data(out / "data", settings, steps, progress=progress,
                              overwrite=a.overwrite)
    if a.until in ("generate", "prep"):
        return None
    steps.start("pretrain", "trunk + softmax over %d disjoint identities, %d iterations "
                "(reid.pretrain)" % (study.pretrain_identities, study.pretrain_iters))
    pretrained = S.pretrain_seed(out, study, a.seed)
    steps.note("pretrained trunk: %s" % P.rel(pretrained))
    if a.until == "pretrain":
        return None
    cfg = P.net_config(prepared, "all", a.seed, s["batch_triplets"])
    nets = P.write_run_nets(cfg, out / "run", s["iters"], a.lr, steps, a.overwrite)
    start = start_weights(nets["train_val"], a.seed, str(out / "run" / "start.caffemodel"),
                          pretrained)
    if a.until == "nets":
        return None
    weights, log, _ = P.train_run(nets, out / "run", s["iters"], steps, a.resume, progress,
                                  weights=pretrained)
    if log.outputs:
        from reid.evaluation.plots import plot_losses
        plot_losses(log, out / "losses.png", title="ALL training losses")
    return None if a.until == "train" else (prepared, cfg, nets, start, weights, log)


def evaluate(a, s, out, trained, steps, progress):
    """Step 6; returns (paths, chance, run meta)."""
    from reid.datasets.synthetic import degraded_frames
    from reid.evaluation.diagnostics import chance_rank1
    prepared, cfg, nets, start, weights, log = trained
    steps.start("evaluate", "MARS official kit + common variant (eq. 2, top k = %d)" % a.k,
                "bin/python tools/evaluate.py --dataset %s --run %s --weights %s"
                % (P.rel(prepared), P.rel(out / "run"), P.rel(weights)))
    dataset, scored = P.score(prepared, cfg, nets, weights, a.k, progress=progress)
    chance = chance_rank1(dataset)
    degraded = degraded_frames(out / "data" / "source")
    meta = P.study_meta(dataset, scored, degraded, cfg, identities=s["identities"],
                        seed=a.seed, iterations=s["iters"], batch_triplets=s["batch_triplets"],
                        base_lr=a.lr, difficulty=a.difficulty, weights=P.rel(weights),
                        chance=chance, **S.learning_diagnostics(dataset, scored, cfg, nets,
                                                                start, weights, log))
    title = "ALL (small net), synthetic MARS: %d identities, %d iterations, seed %d" % (
        s["identities"], s["iters"], a.seed)
    _, paths = P.write_outputs(out, scored, dataset, None, cfg, meta, degraded, title)
    if log.outputs:
        paths["losses"] = out / "losses.png"
    dataset.close()
    return paths, chance, meta


def main(argv=None):
    a = parse_args(argv)
    s = P.sizes(a.identities, a.iters, a.batch_triplets, a.tiny)
    out = a.out.resolve()
    progress = not a.quiet
    steps = P.Steps(STEPS)
    print("demo: small ALL net (TAM + SRM, paper 3) on synthetic MARS; output in %s"
          % P.rel(out))
    try:
        P.open_output(out, "demo", a.fresh, a.overwrite)
        trained = train(a, s, out, steps, progress)
        if trained is None:
            steps.done()
            return 0
        paths, chance, meta = evaluate(a, s, out, trained, steps, progress)
        total = steps.done()
    except P.PipelineError as e:
        steps.done()
        print("\ndemo: %s" % e, file=sys.stderr)
        return 1
    summary = {"seconds": total, "steps": steps.times, "outputs": {
        k: P.rel(v) for k, v in paths.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n" + paths["table"].read_text(), end="")
    print("Chance: rank-1 %.1f %% for random rankings (1 / %d test identities = %.1f %%); "
          "%d queries, gallery of %d tracklets."
          % (100 * chance["random_rankings"], chance["test_identities"],
             100 * chance["one_over_test_ids"], chance["queries"], chance["gallery"]))
    att = meta["attention_on_degraded"]
    if att and att.get("tracklets"):
        print("TAM: over %d test tracklets with corrupted frames, a corrupted frame gets %.2f x "
              "and a clean one %.2f x the uniform weight 1/T."
              % (att["tracklets"], att["degraded_x_T"], att["clean_x_T"]))
    print(S.metric_summary(meta))
    print("\nFinished in %s. Outputs in %s:" % (P.duration(total), P.rel(out)))
    for kind, path in sorted(paths.items()):
        print("  %-12s %s" % (kind, P.rel(path)))
    print(P.rel(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
