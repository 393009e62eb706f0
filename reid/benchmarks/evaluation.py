"""Benchmark of the evaluation protocols at MARS scale (docs/DESIGN.md §5; target: CMC +
mAP of the MARS official protocol from a precomputed 1,980 x 12,180 distance matrix in under
2 s on 2 cores).

The distance matrix is random (uniform) over the real MARS test structure (the kit's
tracks_test_info.mat / query_IDX.mat in reid/datasets/reference/mars_info, or --info).  Rows:

- MARS official protocol, vectorised, on 2 threads and on 1;
- MARS common variant;
- the stable ranking alone (rank_order) and NumPy's stable argsort, for scale;
- eq. 2 re-ranking of the top K = 100 with a free metric (table lookup), i.e. the overhead
  around the SRM, followed by the official protocol;
- the literal loop transcription of the kit's compute_AP.m, timed on a few queries and
  extrapolated to 1,980 (what a straight port would cost).

Each time is the best of --repeats runs; ratios are to the 2 s target and to the kit loop.

A second table measures what eq. 2 costs with a real SRM: pairs per second of the
MetricScorer (reid/evaluation/features.py) over the paper-size ALL deploy_metric net
(pool5 256 x 6 x 6, T = 6, C1 = 128, Hd = 128, C2 = 64; deploy_batch pairs per forward, as
generated) with random weights saved by net.save, for the native SpatialLSTM and the Python
layer (same caffemodel, whose M must agree), and the time that implies for re-scoring the
top 100 of the 1,980 MARS queries.  --srm-impl none skips it.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reid.datasets.reference import mars_kit_info_dir
from reid.evaluation import protocols as P
from reid.evaluation import rerank as R

DEFAULT_INFO = mars_kit_info_dir()
TARGET_S = 2.0


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _kit_loop_time(d, pids, cams, q, n):
    rows = np.linspace(0, q.size - 1, n).astype(int)
    t = time.perf_counter()
    for i in rows:
        qi = q[i]
        good = np.flatnonzero((pids == pids[qi]) & (cams != cams[qi]))
        junk = np.flatnonzero((pids == -1) | ((pids == pids[qi]) & (cams == cams[qi])))
        P.kit_reference_ap_cmc(good, junk, np.argsort(d[i], kind="stable"))
    return (time.perf_counter() - t) / n * q.size


SRM_IMPLS = {"native": "native SpatialLSTM (C++)", "python": "Python SpatialLSTMLayer"}
MARS_TOP100_PAIRS = 1980 * 100


def srm_throughput(impls=("native", "python"), pairs=64, repeats=3, seed=0):
    """{impl: (pairs/s, seconds, M, batch)} of MetricScorer over the paper-size ALL metric
    net, the best of `repeats` passes over `pairs` pairs after one warm-up batch.

    The first implementation's net gets random weights (its fillers, then net.save); every
    implementation loads that caffemodel, so their M must agree.
    """
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    from reid.evaluation.features import MetricScorer
    from reid.nets import PAPER, VARIANTS, NetConfig
    from reid.nets.build import metric_net
    from reid.nets.generate import net_text

    out = {}
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="srm_bench_") as tmp:
        weights = os.path.join(tmp, "all_metric_random.caffemodel")
        for impl in impls:
            cfg = NetConfig(size=PAPER, variant=VARIANTS["all"], impl=impl)
            proto = os.path.join(tmp, "deploy_metric_%s.prototxt" % impl)
            Path(proto).write_text(net_text(metric_net(cfg), "all_metric"))
            if not os.path.exists(weights):
                caffe.Net(proto, caffe.TEST).save(weights)
            scorer = MetricScorer(proto, weights)
            n = max(scorer.N, pairs - pairs % scorer.N)
            if "a" not in out:
                shape = (n, cfg.seq_len) + PAPER.pool5_shape()
                # pool5 is a ReLU + max-pool output: non-negative, a few units in size
                out["a"] = rng.gamma(1.0, 2.0, shape).astype(np.float32)
                out["b"] = rng.gamma(1.0, 2.0, shape).astype(np.float32)
            a, b = out["a"][:n], out["b"][:n]
            scorer(a[:scorer.N], b[:scorer.N])
            dt = float("inf")
            for _ in range(max(1, repeats)):
                t = time.perf_counter()
                m = scorer(a, b)
                dt = min(dt, time.perf_counter() - t)
            out[impl] = (n / dt, dt, m, scorer.N)
    out.pop("a"), out.pop("b")
    return out


def _print_srm(res):
    first = next(iter(res))
    rate0 = res[first][0]
    print()
    print("SRM re-scoring throughput (MetricScorer, paper-size ALL deploy_metric, %d pairs per "
          "forward, random weights, CPU, best of the repeats)" % res[first][3])
    head = (f"{'implementation':<28} {'pairs':>6} {'time s':>8} {'pairs/s':>9} "
            f"{'MARS top-100 (198,000 pairs)':>29} {'x slower':>9}")
    print(head)
    print("-" * len(head))
    for impl, (rate, dt, m, _) in res.items():
        est = MARS_TOP100_PAIRS / rate
        est_s = f"{est / 60:.1f} min" if est < 3 * 3600 else f"{est / 3600:.1f} h"
        print(f"{SRM_IMPLS[impl]:<28} {m.size:6d} {dt:8.2f} {rate:9.1f} {est_s:>29} "
              f"{rate0 / rate:9.2f}")
    if len(res) > 1:
        ms = [r[2] for r in res.values()]
        n = min(m.size for m in ms)
        diff = max(float(np.max(np.abs(m[:n] - ms[0][:n]))) for m in ms[1:])
        print(f"max |M - M_{first}| over the {n} pairs: {diff:.2e}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--info", type=Path, default=DEFAULT_INFO, help="MARS kit info/ folder")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--kit-queries", type=int, default=20,
                   help="queries timed with the literal kit loop (extrapolated)")
    p.add_argument("--srm-impl", default="native,python",
                   help="SRM throughput: comma-separated of native, python; 'none' skips it")
    p.add_argument("--srm-pairs", type=int, default=64, help="pairs timed per implementation")
    # argv None = defaults: tools/bench.py calls main() with its own arguments in sys.argv
    args = p.parse_args([] if argv is None else argv)
    impls = [] if args.srm_impl == "none" else [i for i in args.srm_impl.split(",") if i]
    unknown = sorted(set(impls) - set(SRM_IMPLS))
    if unknown:
        p.error(f"--srm-impl: unknown {unknown}; choose from {sorted(SRM_IMPLS)} or none")

    pids, cams, q = P.load_mars_kit_info(args.info)
    d = np.random.default_rng(0).random((q.size, pids.size))
    lookup = np.random.default_rng(1).random(d.shape)
    metric = lambda qi, gi: lookup[qi, gi]          # noqa: E731  (stands in for the SRM)

    rows = []
    t_off2 = _best(lambda: P.evaluate_mars_official(d, pids, cams, q, workers=2), args.repeats)
    rows.append(("MARS official CMC+mAP, 2 threads", t_off2, True))
    rows.append(("MARS official CMC+mAP, 1 thread",
                 _best(lambda: P.evaluate_mars_official(d, pids, cams, q, workers=1),
                       args.repeats), True))
    rows.append(("MARS common CMC+mAP, 2 threads",
                 _best(lambda: P.evaluate_mars_common(d, pids, cams, q, workers=2),
                       args.repeats), True))
    rows.append(("rank_order (stable), 2 threads",
                 _best(lambda: P.rank_order(d, workers=2), args.repeats), False))
    rows.append(("np.argsort(kind='stable'), 1 thread",
                 _best(lambda: np.argsort(d, axis=1, kind="stable"), args.repeats), False))

    def joint():
        ranking = R.rerank(d, metric, k=100, lam=1.0, batch_size=8192, progress=False)
        P.evaluate_mars_official(ranking, pids, cams, q)
    rows.append(("eq. 2 top-100 rerank (free M) + official", _best(joint, args.repeats), False))
    t_kit = _kit_loop_time(d, pids, cams, q, args.kit_queries)
    rows.append((f"kit compute_AP.m loop (x{q.size}/{args.kit_queries})", t_kit, False))

    print(f"MARS evaluation: {q.size} queries x {pids.size} gallery tracklets, "
          f"best of {args.repeats}")
    head = f"{'measurement':<44} {'time s':>8} {'/ 2 s target':>13} {'kit loop / this':>16}"
    print(head)
    print("-" * len(head))
    for name, t, targeted in rows:
        tgt = f"{t / TARGET_S:.2f}" if targeted else "-"
        print(f"{name:<44} {t:8.3f} {tgt:>13} {t_kit / t:16.1f}")
    ok = t_off2 < TARGET_S
    print(f"official protocol target (< {TARGET_S:.0f} s on 2 cores): "
          f"{'met' if ok else 'NOT met'} ({t_off2:.3f} s)")
    if impls:
        srm = srm_throughput(impls, args.srm_pairs, args.repeats)
        _print_srm(srm)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
