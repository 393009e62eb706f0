"""Benchmark of SRM re-scoring for paper eq. 2 (paper 3.3-3.4) on the CPU: pairs per second.

MetricScorer (reid/evaluation/features.py) over the paper-size ALL deploy_metric net (pool5
256 x 6 x 6, T = 6, C1 = 128, Hd = 128, C2 = 64) with random weights saved by net.save, native
SpatialLSTM, ``--pairs`` random pool5 pairs per pass:

- before: the whole net on the pool5 pairs (MetricScorer.full_forward: D = a - b and the
  1x1 conv srm_reduce for every pair);
- after: the 1x1 conv applied once per tracklet (MetricScorer.project) and the net run from
  the ReLU on (MetricScorer.score_projected), for each deploy batch of ``--batches`` (pairs
  per forward; the committed nets use 8);
- the GEMM-only bound: the matrix products of one forward (srm_reduce, the six-direction
  sweep as in reid/benchmarks/srm.py, srm_fuse, metric_fc) through NumPy's BLAS: no
  implementation of the same net can beat it.

It then prints what re-scoring the top 100 of the 1,980 MARS queries costs (198,000 pairs;
after: plus projecting the 1,980 queries and at most all 12,180 test tracklets once).  All in
one worker process with OPENBLAS_NUM_THREADS fixed (--threads; see reid/benchmarks/srm.py),
medians of --repeats passes, timed as the process's CPU time (with --threads 1 that is the
wall time the machine would give without other jobs).
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from reid.benchmarks import worker_main

MARS_QUERIES, MARS_TEST, TOP_K = 1980, 12180, 100
# CPU time of this (single-BLAS-thread by default) process: on a machine shared with other
# jobs, what the wall time would be without them
CLOCK = time.process_time


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=64, help="pairs per timed pass")
    p.add_argument("--batches", default="8,32", help="deploy batches (pairs per forward)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="OPENBLAS_NUM_THREADS")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _scorer(tmp, batch, weights):
    import caffe
    from reid.evaluation.features import MetricScorer
    from reid.nets import PAPER, VARIANTS, NetConfig
    from reid.nets.build import metric_net
    from reid.nets.generate import net_text
    cfg = NetConfig(size=PAPER, variant=VARIANTS["all"], deploy_batch=batch)
    proto = os.path.join(tmp, "deploy_metric_%d.prototxt" % batch)
    Path(proto).write_text(net_text(metric_net(cfg), "all_metric"))
    if not os.path.exists(weights):
        caffe.Net(proto, caffe.TEST).save(weights)
    return MetricScorer(proto, weights), cfg


def _gemm_bound(batch, cfg):
    """Seconds of the GEMMs of one forward of `batch` pairs: (with srm_reduce, without)."""
    from reid.benchmarks.srm import _gemm_floor
    s = cfg.size
    C, H, W = s.pool5_shape()
    rows = batch * cfg.seq_len * H * W
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, C)).astype(np.float32)
    w_reduce = rng.normal(size=(C, s.srm_in)).astype(np.float32)
    s6 = rng.normal(size=(rows, 6 * s.srm_hidden)).astype(np.float32)
    w_fuse = rng.normal(size=(6 * s.srm_hidden, s.srm_out)).astype(np.float32)
    w_fc = rng.normal(size=(cfg.seq_len * H * W * s.srm_out, 2)).astype(np.float32)
    sweep = _gemm_floor((batch, s.srm_in, cfg.seq_len, H, W), s.srm_hidden, CLOCK)
    t0 = CLOCK()
    x @ w_reduce
    t1 = CLOCK()
    g = s6 @ w_fuse
    g.reshape(batch, -1) @ w_fc
    rest = CLOCK() - t1 + sweep()[0]                # the sweep's forward products
    return t1 - t0 + rest, rest


def _median(fn, repeats):
    return sorted(fn() for _ in range(repeats))[repeats // 2]


def _timed(fn):
    t = CLOCK()
    fn()
    return CLOCK() - t


def worker(a):
    import caffe
    caffe.set_mode_cpu()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rescoring_bench_") as tmp:
        weights = os.path.join(tmp, "all_metric_random.caffemodel")
        for batch in [int(b) for b in a.batches.split(",")]:
            scorer, cfg = _scorer(tmp, batch, weights)
            n = max(batch, a.pairs - a.pairs % batch)
            shape = (n, cfg.seq_len) + cfg.size.pool5_shape()
            # pool5 is a ReLU + max-pool output: non-negative, a few units in size
            pa, pb = (rng.gamma(1.0, 2.0, shape).astype(np.float32) for _ in range(2))
            ya, yb = scorer.project(pa), scorer.project(pb)
            m_full, m_proj = scorer.full_forward(pa, pb), scorer.score_projected(ya, yb)
            before = _median(lambda: _timed(lambda: scorer.full_forward(pa, pb)), a.repeats)
            after = _median(lambda: _timed(lambda: scorer.score_projected(ya, yb)), a.repeats)
            project = _median(lambda: _timed(lambda: scorer.project(pa)), a.repeats)
            bound = [_median(lambda i=i: _gemm_bound(batch, cfg)[i], a.repeats) for i in (0, 1)]
            rows.append(dict(batch=batch, pairs=n, before=before / n, after=after / n,
                             project=project / n, bound_full=bound[0] / batch,
                             bound_after=bound[1] / batch,
                             max_diff=float(np.abs(m_full - m_proj).max())))
    print(json.dumps({"rows": rows, "threads": os.environ.get("OPENBLAS_NUM_THREADS")}))


def mars_seconds(row):
    """(before, after) seconds to re-score the MARS top 100 at this row's rates."""
    pairs = MARS_QUERIES * TOP_K
    return pairs * row["before"], pairs * row["after"] + (MARS_QUERIES + MARS_TEST) * row["project"]


def format_table(result):
    lines = ["SRM re-scoring, paper-size ALL deploy_metric, native SpatialLSTM, CPU, "
             "OPENBLAS_NUM_THREADS=%s (median CPU time)" % result["threads"],
             "%-44s %9s %10s %12s" % ("path (pairs per forward)", "pairs/s", "/ bound",
                                     "MARS top-100")]
    for r in result["rows"]:
        t_before, t_after = mars_seconds(r)
        for label, per_pair, bound, total in (
                ("whole net on pool5 pairs (before), %d" % r["batch"], r["before"],
                 r["bound_full"], t_before),
                ("1x1 conv once per tracklet (after), %d" % r["batch"], r["after"],
                 r["bound_after"], t_after)):
            lines.append("%-44s %9.1f %9.2fx %10.1f min"
                         % (label, 1 / per_pair, per_pair / bound, total / 60))
        lines.append("%-44s %9.1f %10s" % ("  GEMM-only bound, whole net", 1 / r["bound_full"], ""))
        lines.append("%-44s %9.1f %10s" % ("  GEMM-only bound, after projection",
                                           1 / r["bound_after"], ""))
        lines.append("  after / before: %.2fx pairs/s; projection %.2f ms per tracklet; "
                     "max |M_after - M_before| = %.1e" % (r["before"] / r["after"],
                                                          r["project"] * 1e3, r["max_diff"]))
    return "\n".join(lines)


def main(argv=None):
    a = _args(argv)
    return worker_main("reid.benchmarks.rescoring", a, [
        "--pairs", a.pairs, "--batches", a.batches, "--repeats", a.repeats], worker,
        format_table)


if __name__ == "__main__":
    main()
