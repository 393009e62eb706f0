"""Benchmark of the evaluation protocols at MARS scale (docs/DESIGN.md §5): both MARS
protocols from a precomputed 1,980 x 12,180 distance matrix, target <= 0.4 s on 2 cores.

The distance matrix is random (uniform) over the real MARS test structure (the kit's
tracks_test_info.mat / query_IDX.mat in reid/datasets/reference/mars_info, or --info).
Rows, each the best of --repeats runs:

- both MARS protocols (evaluate_mars) by ranks (the default: no sort of the rows, one pass
  for both) and by the full stable sort (method="sort", the reference), on 2 threads and 1,
  and the ratio sort / ranks measured side by side; their results must be identical;
- each protocol alone, by ranks;
- the stable ranking alone (rank_order) and NumPy's stable argsort, for scale;
- eq. 2 re-ranking of the top K = 100 with a free metric (table lookup), i.e. the overhead
  around the SRM, followed by the official protocol;
- the literal loop transcription of the kit's compute_AP.m, timed on a few queries and
  extrapolated to 1,980 (what a straight port would cost).

The SRM's own cost is in reid/benchmarks/rescoring.py.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from reid.datasets.reference import mars_kit_info_dir
from reid.evaluation import protocols as P
from reid.evaluation import rerank as R

DEFAULT_INFO = mars_kit_info_dir()
TARGET_S = 0.4                 # both MARS protocols, 2 threads


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _wall_cpu(fn):
    """(wall s, CPU s) of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _kit_loop_time(d, pids, cams, q, n):
    rows = np.linspace(0, q.size - 1, n).astype(int)
    t = time.perf_counter()
    for i in rows:
        qi = q[i]
        good = np.flatnonzero((pids == pids[qi]) & (cams != cams[qi]))
        junk = np.flatnonzero((pids == -1) | ((pids == pids[qi]) & (cams == cams[qi])))
        P.kit_reference_ap_cmc(good, junk, np.argsort(d[i], kind="stable"))
    return (time.perf_counter() - t) / n * q.size


def _same_results(a, b):
    for x, y in zip(a, b):
        for key in ("ap", "first_match_rank", "num_good"):
            if not np.array_equal(x["per_query"][key], y["per_query"][key], equal_nan=True):
                return False
        if x["cmc"] != y["cmc"] or x["ranks"] != y["ranks"]:
            return False
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--info", type=Path, default=DEFAULT_INFO, help="MARS kit info/ folder")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--kit-queries", type=int, default=20,
                   help="queries timed with the literal kit loop (extrapolated)")
    # argv None = defaults: tools/bench.py calls main() with its own arguments in sys.argv
    args = p.parse_args([] if argv is None else argv)

    pids, cams, q = P.load_mars_kit_info(args.info)
    d = np.random.default_rng(0).random((q.size, pids.size))
    lookup = np.random.default_rng(1).random(d.shape)
    metric = lambda qi, gi: lookup[qi, gi]          # noqa: E731  (stands in for the SRM)
    both = lambda method, w: P.evaluate_mars(d, pids, cams, q, method=method,  # noqa: E731
                                             workers=w)
    identical = _same_results(both("ranks", 2), both("sort", 2))

    rows, pairs = [], []
    for w in (2, 1):
        t = {"sort": [float("inf")] * 2, "ranks": [float("inf")] * 2}   # wall, CPU
        for _ in range(args.repeats):             # interleaved: load hits both alike
            for method in ("sort", "ranks"):
                t[method] = [min(a, b) for a, b in zip(t[method], _wall_cpu(
                    lambda: both(method, w)))]
        th = "threads" if w > 1 else "thread"
        rows.append((f"both MARS protocols, ranks, {w} {th}", t["ranks"][0], True))
        rows.append((f"both MARS protocols, full sort, {w} {th}", t["sort"][0], False))
        pairs.append((w, t["sort"], t["ranks"]))
    rows.append(("MARS official alone, ranks, 2 threads",
                 _best(lambda: P.evaluate_mars_official(d, pids, cams, q, workers=2),
                       args.repeats), False))
    rows.append(("MARS common alone, ranks, 2 threads",
                 _best(lambda: P.evaluate_mars_common(d, pids, cams, q, workers=2),
                       args.repeats), False))
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
    head = f"{'measurement':<44} {'time s':>8} {'/ 0.4 s target':>15} {'kit loop / this':>16}"
    print(head)
    print("-" * len(head))
    for name, t, targeted in rows:
        tgt = f"{t / TARGET_S:.2f}" if targeted else "-"
        print(f"{name:<44} {t:8.3f} {tgt:>15} {t_kit / t:16.1f}")
    for w, t_sort, t_ranks in pairs:
        print(f"full sort / ranks, {w} thread(s): {t_sort[0] / t_ranks[0]:.2f}x wall "
              f"({t_sort[0]:.3f} s -> {t_ranks[0]:.3f} s), {t_sort[1] / t_ranks[1]:.2f}x CPU "
              f"({t_sort[1]:.3f} -> {t_ranks[1]:.3f} CPU s), same run")
    print("(CPU s: this process's CPU time; on a machine shared with other jobs it is what "
          "the wall time would be without them, for 1 thread)")
    print(f"results by ranks and by full sort identical: {'yes' if identical else 'NO'}")
    w2 = pairs[0][2][0]
    print(f"target (both protocols <= {TARGET_S} s on 2 threads): "
          f"{'met' if w2 <= TARGET_S else 'NOT met'} ({w2:.3f} s)")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
