"""What the table of a scored run does not show, for the synthetic studies (demo, Table 2):
chance levels, the spread of the features F, how the TAM weights (eq. 3) treat the frames
the generator degraded.
"""
import numpy as np

from reid.ops.distance import euclidean_distance

from . import protocols


def chance_rank1(dataset, draws=50):
    """Rank-1 of random rankings under the official protocol (mean of draws) and
    1 / number of test identities, the two readings of 'chance'."""
    test = dataset.gallery_idx
    pos = {int(t): i for i, t in enumerate(test)}
    q = np.array([pos[int(t)] for t in dataset.query_idx])
    rng = np.random.default_rng(0)
    r1 = [protocols.evaluate_mars_official(rng.random((q.size, test.size)), dataset.pids[test],
                                           dataset.cams[test], q)["ranks"]["1"]
          for _ in range(draws)]
    n_ids = len({int(p) for p in dataset.pids[test] if p > 0})
    return {"random_rankings": float(np.mean(r1)), "one_over_test_ids": 1.0 / n_ids,
            "test_identities": n_ids, "queries": int(q.size), "gallery": int(test.size)}


def feature_spread(scored):
    """Mean pairwise distance of the L2-normalised test features F (0 = collapsed to a point,
    ~1.41 = orthogonal): a collapsed feature model is visible here before in the ranks."""
    d = euclidean_distance(scored.features["F"], scored.features["F"])
    n = d.shape[0]
    return float(d.sum() / max(1, n * (n - 1)))


def attention_on_degraded(dataset, scored, degraded, seq_len):
    """How the TAM weights (eq. 3, mean over the T steps) treat degraded frames: over the
    first T-frame chunk of every test tracklet that mixes clean and degraded frames, the
    mean weight of a degraded and of a clean frame, times T (1 = uniform). None without a
    TAM. degraded: reid.datasets.synthetic.degraded_frames."""
    if "attention" not in scored.features:
        return None
    on_bad, on_good, n = [], [], 0
    for row, tid in enumerate(scored.tids):
        t = dataset.tracklets[int(tid)]
        deg = degraded.get(t.source, {})
        pos = dataset.positions(int(tid), 0, seq_len)
        bad = np.array([t.frames[p] in deg for p in pos])
        if bad.all() or not bad.any():
            continue
        w = scored.features["attention"][row].mean(0)
        on_bad.append(w[bad].mean() * seq_len)
        on_good.append(w[~bad].mean() * seq_len)
        n += 1
    if not n:
        return {"tracklets": 0}
    return {"tracklets": n, "degraded_x_T": float(np.mean(on_bad)),
            "clean_x_T": float(np.mean(on_good)),
            "degraded_lower_share": float(np.mean(np.array(on_bad) < np.array(on_good)))}


def pick_attention_tracklet(dataset, scored, degraded, seq_len):
    """A query whose first T frames mix clean and degraded ones (occlusion preferred), so
    that the attention plot shows whether the TAM down-weights them; else the first query.
    Returns (tracklet id, degradation or None per frame, or None)."""
    queries = [int(t) for t in scored.lists[0]["query"]]
    best = None
    for tid in queries:
        t = dataset.tracklets[tid]
        kinds = [degraded.get(t.source, {}).get(t.frames[p]) for p in
                 dataset.positions(tid, 0, seq_len)]
        n_bad = sum(k is not None for k in kinds)
        if 0 < n_bad < seq_len:
            score = (2 if "occlusion" in kinds else 1, -abs(n_bad - 2))
            if best is None or score > best[0]:
                best = (score, tid, kinds)
    if best is None:
        return queries[0], None
    return best[1], best[2]
