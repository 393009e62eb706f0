#!/usr/bin/env python
"""Write nets from the net generator (reid/nets): every committed prototxt, or one run's.

    bin/python tools/generate_nets.py                    # every file in prototxt/
    bin/python tools/generate_nets.py --out DIR [--dataset mars|ilidsvid|prid2011]
        [--variant all|cnn|...] [--size small|paper] [--source PREPARED] [--split K]
        [--iters N] [--lr LR] [--batch-triplets B] [--seed S] [--work SNAPSHOT_DIR]

With --out, one run's train_val, deploy_features[, deploy_metric] and solver prototxt go
into DIR: the committed nets of (dataset, variant, size) reading the prepared dataset
--source (default data/<dataset>), training on split K of iLIDS-VID / PRID2011 (its
training persons only), with the committed schedule of (size, dataset) stretched to
--iters (lr x 0.1 after 2/3, about five snapshots) and its base_lr / B changed. Snapshots go
to --work (default DIR/snapshots). Paths are written as given, relative to where caffe runs.
No run's nets need editing by hand: e.g. split 3 of iLIDS-VID fine-tuned from MARS is

    bin/python tools/generate_nets.py --dataset ilidsvid --split 3 --out work/ilidsvid/split3
    bin/python tools/train.py work/ilidsvid/split3/solver.prototxt --weights MARS.caffemodel
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reid.nets.generate import DATASETS, files_for, run_config, write, write_all  # noqa: E402
from reid.nets.config import SIZES, VARIANTS  # noqa: E402

RUN_OPTIONS = ("dataset", "variant", "size", "source", "split", "iters", "lr",
               "batch_triplets", "seed", "work")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--base", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="without --out: the repository root to write prototxt/ into")
    ap.add_argument("--out", default=None, help="folder of one run's nets")
    ap.add_argument("--dataset", choices=DATASETS, default=None, help="default mars")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default=None, help="default all")
    ap.add_argument("--size", choices=sorted(SIZES), default=None, help="default small")
    ap.add_argument("--source", default=None, help="prepared dataset (default data/<dataset>)")
    ap.add_argument("--split", type=int, default=None, help="iLIDS-VID / PRID2011 split, 0..9")
    ap.add_argument("--iters", type=int, default=None, help="training iterations")
    ap.add_argument("--lr", type=float, default=None, help="base learning rate")
    ap.add_argument("--batch-triplets", type=int, default=None, help="B triplets per iteration")
    ap.add_argument("--seed", type=int, default=None, help="seed of data and solver (default 1)")
    ap.add_argument("--work", default=None, help="snapshot folder (default OUT/snapshots)")
    a = ap.parse_args(argv)
    given = [o for o in RUN_OPTIONS if getattr(a, o) is not None]
    if given and a.out is None:
        ap.error("--%s: give --out, the folder of the run's nets" % given[0].replace("_", "-"))
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.out is None:
        files = write_all(a.base)
        print("wrote %d files under %s" % (len(files), os.path.join(a.base, "prototxt")))
        return 0
    try:
        cfg, schedule = run_config(a.dataset or "mars", a.variant or "all", a.size or "small",
                                   a.source, a.split, a.iters, a.lr, a.batch_triplets,
                                   1 if a.seed is None else a.seed)
    except ValueError as e:
        raise SystemExit("generate_nets: %s" % e)
    work = a.work or os.path.join(a.out, "snapshots")
    files = files_for(cfg, a.out, work, schedule)
    for path, text in sorted(files.items()):
        write(path, text)
    print("wrote %s (%s %s net, %d iterations, base_lr %g, B = %d%s; snapshots %s/)" % (
        ", ".join(sorted(os.path.basename(p) for p in files)), cfg.size.name,
        cfg.variant.label, schedule.max_iter, schedule.base_lr, schedule.batch_triplets,
        "" if cfg.split_index is None else ", split %d" % cfg.split_index, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
