#!/usr/bin/env python
"""Train one net: `bin/caffe train -solver SOLVER` with a progress bar and a loss plot.

    bin/python tools/train.py SOLVER [--weights W.caffemodel] [--snapshot S.solverstate]
                              [--log LOG]

Runs Caffe's own tool (reid.run.train), follows its log (default: train.log beside
the solver), stops at the first NaN loss, and writes the training losses next to the log
(<log stem>_losses.png). --weights initialises from a caffemodel (e.g. ImageNet CaffeNet,
paper 4.2); --snapshot resumes from a solverstate (the data layer continues with the batch
an uninterrupted run would have seen).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid import run  # noqa: E402
from reid.evaluation.plots import plot_losses  # noqa: E402

MAX_ITER_RE = re.compile(r"^\s*max_iter:\s*(\d+)", re.M)


def max_iter(solver):
    """max_iter of a solver prototxt (clear error when the file or the field is missing)."""
    if not os.path.isfile(solver):
        raise SystemExit("train: solver file %s not found" % solver)
    m = MAX_ITER_RE.search(Path(solver).read_text())
    if not m:
        raise SystemExit("train: %s has no max_iter" % solver)
    return int(m.group(1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("solver", help="solver prototxt")
    p.add_argument("--weights", help="caffemodel to initialise from")
    p.add_argument("--snapshot", help="solverstate to resume from")
    p.add_argument("--log", help="log file (default: train.log beside the solver)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    iters = max_iter(a.solver)
    for flag, path in (("--weights", a.weights), ("--snapshot", a.snapshot)):
        if path and not os.path.isfile(path):
            raise SystemExit("train: %s file %s not found" % (flag, path))
    log_path = a.log or os.path.join(os.path.dirname(os.path.abspath(a.solver)), "train.log")
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    print("train: %s, %d iterations; log %s" % (a.solver, iters, log_path), flush=True)
    try:
        log = run.train(a.solver, log_path, iters, weights=a.weights, snapshot=a.snapshot,
                        progress=not a.quiet)
    except RuntimeError as e:                    # run.TrainingDiverged, a failed caffe
        raise SystemExit("train: %s" % e)
    plot = os.path.splitext(log_path)[0] + "_losses.png"
    if log.outputs:
        plot_losses(log, plot, title="training losses: %s" % a.solver)
        last = ", ".join("%s %.4g" % (k, v[-1]) for k, v in sorted(log.outputs.items()))
        print("train: done; last readings: %s\nlosses: %s" % (last, plot))
    else:
        print("train: done (no loss readings in the log; display: 0?)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
