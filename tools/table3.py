#!/usr/bin/env python
"""Table 3 of the paper in one command: ALL trained on MARS, fine-tuned on each of the ten
splits of iLIDS-VID and PRID2011 (paper 4.3), all three scored with their protocols, one
Table-3-shaped row beside the paper's (reid.table3).

    bin/python tools/table3.py [--out out/table3]         # synthetic data, small nets, CPU
    bin/python tools/table3.py --data data --size paper \\
        --init-weights bvlc_reference_caffenet.caffemodel \\
        --out out/table3_paper                            # the real thing, on a GPU
    bin/python tools/table3.py --mars-weights M.caffemodel ...   # fine-tune a MARS model

Steps (each prints the stand-alone command that does the same thing):

  1 generate, 2 prep   synthetic MARS, iLIDS-VID and PRID2011 layouts, prepared with the real
                       prep tools (skipped with --data DIR: DIR/mars, DIR/ilidsvid, DIR/prid2011)
  3 train MARS         tools/generate_nets.py + tools/train.py (skipped with --mars-weights)
  4-5 fine-tune        per split k: nets with split_index k, tools/train.py --weights MARS
  6 evaluate           tools/evaluate.py: MARS official kit + common variant; iLIDS-VID and
                       PRID2011 over the splits, mean ± std
  7 table              table3.txt/.csv/.json (ours and the paper's row), table3_cmc.png

Re-running reuses everything already done with the same settings: a finished split is
skipped, an interrupted training continues from its last snapshot. Iterations, learning rate
and B are the committed schedules of --size (reid.nets.config.SCHEDULES) unless overridden.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_minloglevel", "2")   # Caffe's per-layer set-up log

from reid import pipeline, table3  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--out", type=Path, default=Path("out/table3"), help="output folder")
    p.add_argument("--data", type=Path, default=None,
                   help="folder of prepared datasets mars/, ilidsvid/, prid2011/ (default: "
                        "synthetic ones, made in --out)")
    p.add_argument("--size", choices=("small", "paper"), default="small",
                   help="net size: small (CPU, default) or paper (GPU)")
    p.add_argument("--mars-weights", default=None,
                   help="a trained MARS ALL model to fine-tune from (skips the MARS training)")
    p.add_argument("--init-weights", default=None,
                   help="what the MARS training starts from (paper: ImageNet CaffeNet)")
    p.add_argument("--splits", default=None,
                   help="comma-separated splits to fine-tune and score (default: all ten)")
    p.add_argument("--identities", type=int, default=None,
                   help="synthetic identities per dataset (default %d)" % table3.IDENTITIES)
    p.add_argument("--mars-iters", type=int, default=None,
                   help="MARS training iterations (default: the committed schedule)")
    p.add_argument("--finetune-iters", type=int, default=None,
                   help="fine-tuning iterations per split (default: the committed schedule)")
    p.add_argument("--lr", type=float, default=None, help="base learning rate of every training")
    p.add_argument("--batch-triplets", type=int, default=None, help="B triplets per iteration")
    p.add_argument("--seed", type=int, default=1, help="seed of the data and the trainings")
    p.add_argument("-k", type=int, default=100, help="eq. 2 re-scored list length")
    p.add_argument("--tiny", action="store_true", help="CI size (plumbing only)")
    p.add_argument("--fresh", action="store_true", help="redo everything")
    p.add_argument("--overwrite", action="store_true",
                   help="with --fresh, also delete an --out this tool did not write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    if a.splits is not None:
        try:
            a.splits = tuple(int(s) for s in a.splits.split(",") if s.strip())
        except ValueError:
            p.error("--splits: expected comma-separated integers, got %r" % a.splits)
        if not a.splits or any(not 0 <= s < 10 for s in a.splits):
            p.error("--splits: splits are 0..9")
    return a


def main(argv=None):
    a = parse_args(argv)
    extra = {"splits": a.splits} if a.splits else {}
    if a.identities:
        extra["identities"] = a.identities
    try:
        plan = table3.Plan.build(a.out, a.size, a.mars_iters, a.finetune_iters, a.lr,
                                 a.batch_triplets, a.tiny, data=a.data, seed=a.seed, k=a.k,
                                 mars_weights=a.mars_weights, init_weights=a.init_weights,
                                 progress=not a.quiet, **extra)
        pipeline.open_output(plan.out, "table3", a.fresh, a.overwrite)
        print("Table 3: ALL (%s nets) on %s; output in %s" % (
            plan.size, a.data or "synthetic data", pipeline.rel(plan.out)), flush=True)
        paths, seconds = table3.run(plan)
    except (table3.Table3Error, pipeline.PipelineError, ValueError, OSError) as e:
        print("\ntable3: %s" % e, file=sys.stderr)
        return 1
    print("\n" + paths["table"].read_text(), end="")
    print("\nFinished in %s. Outputs in %s:" % (pipeline.duration(seconds),
                                                pipeline.rel(plan.out)))
    for kind, path in sorted(paths.items()):
        print("  %-6s %s" % (kind, pipeline.rel(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
