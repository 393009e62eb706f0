"""Benchmark of the evaluation protocols at MARS scale (DESIGN.md 5; issue #6 target: CMC +
mAP of the MARS official protocol from a precomputed 1,980 x 12,180 distance matrix in under
2 s on 2 cores).

The distance matrix is random (uniform) over the real MARS test structure (the kit's
tracks_test_info.mat / query_IDX.mat in /work/shared/datasets/mars/info, or --info).  Rows:

- MARS official protocol, vectorised, on 2 threads and on 1;
- MARS common variant;
- the stable ranking alone (rank_order) and NumPy's stable argsort, for scale;
- eq. 2 re-ranking of the top K = 100 with a free metric (table lookup), i.e. the overhead
  around the SRM, followed by the official protocol;
- the literal loop transcription of the kit's compute_AP.m, timed on a few queries and
  extrapolated to 1,980 (what a straight port would cost).

Each time is the best of --repeats runs; ratios are to the 2 s target and to the kit loop.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from reid.evaluation import protocols as P
from reid.evaluation import rerank as R

DEFAULT_INFO = Path("/work/shared/datasets/mars/info")
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--info", type=Path, default=DEFAULT_INFO, help="MARS kit info/ folder")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--kit-queries", type=int, default=20,
                   help="queries timed with the literal kit loop (extrapolated)")
    args = p.parse_args(argv)

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
    return rows


if __name__ == "__main__":
    main()
