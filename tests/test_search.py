"""Gallery search (reid/evaluation/search.py): the flat index's top K is the protocols' top K
by d, IVF recall@K, eq. 2 re-scoring equal to rerank's, feature files end to end."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from reid.evaluation import protocols as P
from reid.evaluation import rerank as R
from reid.evaluation import search as S
from reid.evaluation.feature_store import FeatureStore, Identity


def features(seed, n_g=600, n_q=25, D=32, clusters=0):
    rng = np.random.default_rng(seed)
    if clusters:
        centres = rng.normal(size=(clusters, D)) * 3
        g = centres[rng.integers(0, clusters, n_g)] + rng.normal(size=(n_g, D))
        q = centres[rng.integers(0, clusters, n_q)] + rng.normal(size=(n_q, D))
    else:
        g, q = rng.normal(size=(n_g, D)), rng.normal(size=(n_q, D))
    g[50:60] = g[40:50]                 # duplicates: equal d, ties broken by row
    q[0] = g[45]                        # a query equal to a tied gallery pair
    return q, g


@pytest.mark.parametrize("k", [1, 10, 100])
def test_flat_top_k_equals_brute_force(k):
    q, g = features(0)
    d = R.euclidean_distance(q, g)                     # the protocols' d
    want = P.rank_order(d)[:, :k]
    index = S.GalleryIndex.build_from(g, "flat", progress=False)
    got_d, got = index.search(q, k)
    np.testing.assert_array_equal(got, want)
    # the same formula, |a|^2 + |b|^2 - 2ab, in another GEMM shape: rounding differs in the
    # last bits, which the square root lifts to ~1e-8 next to d = 0
    np.testing.assert_allclose(got_d, np.take_along_axis(d, want, 1), rtol=0, atol=1e-7)
    assert got[0, :2].tolist() == [45, 55][:k]          # the tie, lower row first


def test_ivf_recall():
    q, g = features(1, n_g=3000, n_q=50, clusters=40)
    truth = P.rank_order(R.euclidean_distance(q, g))[:, :100]
    rec = {}
    for nprobe in (1, 4, 32):
        index = S.GalleryIndex.build_from(g, "ivf", nlist=32, nprobe=nprobe, progress=False)
        rec[nprobe] = S.recall_at_k(index.search(q, 100)[1], truth)
    print("IVF recall@100 (nlist 32) by nprobe:", rec)
    assert rec[32] == 1.0                 # every list visited: exhaustive, exact re-ranking
    assert rec[1] < rec[4] <= rec[32] and rec[1] > 0.3


class ToyScorer:
    """Stands in for MetricScorer: M = sigmoid of a fixed projection of the difference."""
    def __init__(self, D):
        self.w = np.random.default_rng(5).normal(size=D)

    def project(self, x):
        return np.asarray(x, dtype=np.float64)

    def score_projected(self, a, b):
        return 1.0 / (1.0 + np.exp(-((a - b) ** 2) @ self.w))


def test_rescore_equals_rerank():
    q, g = features(2, n_g=300, n_q=12, D=8)
    d = R.euclidean_distance(q, g)
    sc = ToyScorer(8)
    want = R.rerank(d, lambda qi, gi: sc.score_projected(q[qi], g[gi]), k=20, lam=0.7,
                    progress=False)
    d_k, rows = S.GalleryIndex.build_from(g, "flat", progress=False).search(q, 20)
    rows, d_k, s_k, m_k = S.rescore(d_k, rows, q, lambda r: g[r], sc, lam=0.7, query_batch=5)
    np.testing.assert_array_equal(rows, want.order[:, :20])
    np.testing.assert_allclose(s_k, want.scores, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s_k, 1 / (1 + d_k) + 0.7 * m_k, rtol=0, atol=1e-12)


def chunks_of(F, pool5_chunks, per_tracklet):
    """FeatureExtractor.extract-like output: ``per_tracklet`` chunks each, starts 0, 6, ..."""
    n = len(F)
    return {"F": F, "pool5_chunks": pool5_chunks,
            "chunk_offsets": np.arange(n + 1) * per_tracklet,
            "chunk_starts": np.tile(np.arange(per_tracklet) * 6, n)}


def write_store(tmp, name, tids, F, pids, roles, ident, pool5_chunks=None):
    trk = [SimpleNamespace(pid=int(p), cam=1 + i % 2, num_frames=6, role=r)
           for i, (p, r) in enumerate(zip(pids, roles))]
    ds = SimpleNamespace(name="toy", tracklets={int(t): x for t, x in zip(tids, trk)})
    if pool5_chunks is None:
        pool5_chunks = np.zeros((len(tids), 1, 2, 1, 1), np.float32)
    return FeatureStore.write(tmp / name, ds, tids,
                              chunks_of(F, pool5_chunks, len(pool5_chunks) // len(tids)), ident)


def test_gallery_pool5_is_each_tracklets_first_chunk(tmp_path):
    """Re-scoring reads the first chunk's pool5 of each candidate, across gallery files."""
    ident = Identity(weights="w" * 64, nets={"deploy_features": "f" * 64}, dataset="d" * 64)
    vol = np.arange(10 * 3, dtype=np.float32).reshape(30, 1, 1, 1, 1)   # 3 chunks each
    a = write_store(tmp_path, "a.h5", np.arange(6), np.eye(10)[:6], np.arange(6), [""] * 6,
                    ident, vol[:18])
    b = write_store(tmp_path, "b.h5", np.arange(6, 10), np.eye(10)[6:], np.arange(4),
                    [""] * 4, ident, vol[18:])
    gallery = S.Gallery([FeatureStore.open(p, arrays=("F",)) for p in (a, b)])
    np.testing.assert_array_equal(gallery.pool5([1, 5, 6, 9]).ravel(), [3, 15, 18, 27])
    loaded = FeatureStore.open(b)
    np.testing.assert_array_equal(loaded.features["pool5"].ravel(), [18, 21, 24, 27])
    np.testing.assert_array_equal(loaded.first_pool5([3, 0]).ravel(), [27, 18])


def test_run_over_two_gallery_files(tmp_path):
    q, g = features(3, n_g=200, n_q=6)
    ident = Identity(weights="w" * 64, nets={"deploy_features": "f" * 64}, dataset="d" * 64)
    pids = np.arange(200) % 17
    a = write_store(tmp_path, "cam1.h5", np.arange(120), g[:120], pids[:120], [""] * 120, ident)
    b = write_store(tmp_path, "cam2.h5", np.arange(120, 200), g[120:], pids[120:], [""] * 80,
                    ident)
    qf = write_store(tmp_path, "q.h5", np.arange(1000, 1006), q, np.arange(6),
                     ["query", "", "query", "query", "", "query"], ident)
    paths = S.run([a, b], qf, tmp_path / "out", k=7, progress=False)
    res = json.loads(paths["json"].read_text())
    want = P.rank_order(R.euclidean_distance(q[[0, 2, 3, 5]], g))[:, :7]
    assert [x["tid"] for x in res["queries"]] == [1000, 1002, 1003, 1005]
    got = [[x["tid"] for x in item["ranked"]] for item in res["queries"]]
    assert got == want.tolist()                          # tids equal gallery rows here
    files = {x["file"] for item in res["queries"] for x in item["ranked"]}
    assert files <= {str(a), str(b)}
    assert res["queries"][0]["ranked"][0]["pid"] == int(pids[want[0, 0]])


def test_bad_input():
    with pytest.raises(P.EvaluationInputError, match="index kind"):
        S.GalleryIndex.build_from(np.ones((3, 2)), "hnsw", progress=False)
    with pytest.raises(P.EvaluationInputError, match="nlist must be in 1..3"):
        S.GalleryIndex.build_from(np.ones((3, 2)), "ivf", nlist=9, progress=False)


def test_bench_small():
    """The search bench end to end on a tiny gallery: visiting every IVF list is exhaustive."""
    from reid.benchmarks import search as bench
    rows = bench.main(["--gallery", "3000", "--dim", "16", "--queries", "10", "--nlist", "16",
                       "--nprobe", "2,16", "--k", "20"])
    assert [r[0] for r in rows] == ["flat (exact)", "ivf nlist 16 nprobe 2",
                                    "ivf nlist 16 nprobe 16"]
    assert rows[2][4] == 1.0 and 0 < rows[1][4] <= 1.0
    assert rows[2][5] == rows[0][5] and 0 < rows[0][5] <= 1.0    # same results, same share


def test_ranked_list_figure_from_dataset_frames(tiny_mars, tmp_path):
    """search.run draws Fig. 10 with the scored runs' helper (plots.tracklet_ranked_lists):
    with F = one-hot pid, each query's first shown gallery tracklet is right (green border)
    and same-camera matches (junk) are skipped."""
    import cv2

    from reid.datasets import open_dataset
    from reid.evaluation import plots
    ident = Identity(weights="w" * 64, nets={"deploy_features": "f" * 64}, dataset="d" * 64)
    with open_dataset(tiny_mars) as ds:
        test = ds.gallery_idx
        F = np.eye(ds.pids.max() + 2)[ds.pids[test]]
        h5 = FeatureStore.write(tmp_path / "g.h5", ds, test,
                                chunks_of(F, np.zeros((test.size, 1, 1, 1, 1)), 1), ident)
        paths = S.run([h5], h5, tmp_path / "out", k=10, dataset=ds, figure_queries=2,
                      progress=False)
        res = json.loads(paths["json"].read_text())
        img = cv2.imread(str(paths["figure"]))
        y = 2
        for item in res["queries"][:2]:
            n = min(4, ds.tracklets[item["tid"]].num_frames)
            x0 = n * (48 + 8) + 16                           # query tiles, then the gap
            first = next(x for x in item["ranked"] if x["camera"] != item["camera"])
            assert first["pid"] == item["pid"]
            assert tuple(img[y, 1]) == plots.QUERY_COLOUR
            assert tuple(img[y, x0 + 1]) == plots.LABEL_COLOURS["right"]
            y += 96 + 8 + 14 + 8                              # tile, rank strip, pad
