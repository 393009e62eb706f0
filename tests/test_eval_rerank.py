"""Top-K re-scoring with paper eq. 2 (reid/evaluation/rerank.py; DESIGN.md 1.3).

K = gallery size must give exactly the brute-force ranking by S (ties included); K smaller
must only reorder the top K of the ranking by d.
"""
from pathlib import Path

import numpy as np
import pytest

from reid.evaluation import protocols as P
from reid.evaluation import rerank as R
from reid.evaluation.score import rank_variant
from reid.nets.config import VARIANTS

MARS_INFO = Path("/work/shared/datasets/mars/info")


def tied_case(seed, n_q=40, n_g=90):
    """d and M on coarse grids, so that S has many exact ties."""
    rng = np.random.default_rng(seed)
    d = rng.integers(0, 6, (n_q, n_g)) / 4.0
    m = rng.integers(0, 5, (n_q, n_g)) / 4.0
    return d, m


class Lookup:
    """metric_fn over a precomputed M table that records its calls."""

    def __init__(self, m):
        self.m, self.calls = m, []

    def __call__(self, q_idx, g_idx):
        self.calls.append((q_idx.copy(), g_idx.copy()))
        return self.m[q_idx, g_idx]


def brute_force_order(s):
    """Every pair scored, best S first, ties by gallery column (stable sort)."""
    return np.argsort(-s, axis=1, kind="stable")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_k_equal_gallery_is_exactly_brute_force(seed, lam):
    d, m = tied_case(seed)
    s = R.similarity(d, m, lam)
    ranking = R.rerank(d, Lookup(m), k=d.shape[1], lam=lam, batch_size=257)
    assert ranking.k == d.shape[1]
    np.testing.assert_array_equal(ranking.order, brute_force_order(s))
    np.testing.assert_array_equal(ranking.scores, np.take_along_axis(s, ranking.order, 1))


def test_ties_exist_in_the_tied_case():
    d, m = tied_case(0)
    s = np.sort(R.similarity(d, m), axis=1)
    assert (s[:, 1:] == s[:, :-1]).sum() > 100      # the exactness test does test ties


@pytest.mark.parametrize("k", [1, 7, 30, 89])
def test_k_smaller_only_reorders_the_top_k(k):
    d, m = tied_case(11)
    by_d = np.argsort(d, axis=1, kind="stable")
    ranking = R.rerank(d, Lookup(m), k=k, batch_size=64)
    order = ranking.order
    np.testing.assert_array_equal(order[:, k:], by_d[:, k:])          # tail untouched
    np.testing.assert_array_equal(np.sort(order[:, :k], 1), np.sort(by_d[:, :k], 1))
    s = R.similarity(d, m)
    top_s = np.take_along_axis(s, order[:, :k], 1)
    assert np.all(np.diff(top_s, axis=1) <= 0)                         # best S first
    tie = np.diff(top_s, axis=1) == 0                                  # ties: column order
    assert np.all(np.diff(order[:, :k], axis=1)[tie] > 0)
    np.testing.assert_array_equal(ranking.scores, top_s)


def test_metric_is_called_in_batches_on_exactly_the_top_k_pairs():
    d, m = tied_case(2, n_q=13, n_g=50)
    fn = Lookup(m)
    R.rerank(d, fn, k=9, batch_size=20)
    sizes = [q.size for q, _ in fn.calls]
    assert max(sizes) <= 20 and sum(sizes) == 13 * 9 and len(sizes) == int(np.ceil(117 / 20))
    q = np.concatenate([c[0] for c in fn.calls])
    g = np.concatenate([c[1] for c in fn.calls])
    assert np.all(np.diff(q) >= 0)                     # row-major: queries in order
    by_d = np.argsort(d, axis=1, kind="stable")[:, :9]
    np.testing.assert_array_equal(g.reshape(13, 9), by_d)


def test_distance_mode_is_the_order_by_d():
    d, _ = tied_case(3)
    ranking = R.rerank(d, mode="distance")
    np.testing.assert_array_equal(ranking.order, np.argsort(d, 1, kind="stable"))
    assert ranking.k == 0 and ranking.scores is None


def test_metric_mode_without_d_scores_every_pair():
    _, m = tied_case(4)
    fn = Lookup(m)
    ranking = R.rerank(None, fn, mode="metric", shape=m.shape, batch_size=1000)
    np.testing.assert_array_equal(ranking.order, brute_force_order(m))
    assert sum(c[0].size for c in fn.calls) == m.size


def test_metric_mode_with_preselection():
    d, m = tied_case(5)
    ranking = R.rerank(d, Lookup(m), mode="metric", k=10)
    top_m = np.take_along_axis(m, ranking.order[:, :10], 1)
    assert np.all(np.diff(top_m, axis=1) <= 0)
    np.testing.assert_array_equal(ranking.order[:, 10:], np.argsort(d, 1, kind="stable")[:, 10:])


@pytest.mark.parametrize("mode", ["joint", "metric"])
def test_distance_like_matrix_gives_the_same_ranking(mode):
    d, m = tied_case(6)
    m = m + np.random.default_rng(0).random(m.shape) * 1e-3     # distinct M in metric mode
    m = np.clip(m, 0, 1)
    ranking = R.rerank(d, Lookup(m), k=25, mode=mode)
    np.testing.assert_array_equal(np.argsort(ranking.distance_like(d), 1, kind="stable"),
                                  ranking.order)


def test_protocols_accept_a_ranking():
    d, m = tied_case(7, n_q=20, n_g=60)
    rng = np.random.default_rng(7)
    pids = rng.integers(1, 6, 60)
    cams = rng.integers(1, 3, 60)
    q = np.arange(20)
    ranking = R.rerank(d, Lookup(m), k=60)
    a = P.evaluate_mars_common(ranking, pids, cams, q)
    b = P.evaluate_mars_common(-R.similarity(d, m), pids, cams, q)   # brute force by S
    assert a["mAP"] == b["mAP"] and a["cmc"] == b["cmc"]


def test_euclidean_distance_of_normalised_features():
    rng = np.random.default_rng(8)
    qf, gf = rng.normal(size=(7, 16)) * 5, rng.normal(size=(11, 16))
    d = R.euclidean_distance(qf, gf)
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    naive = np.sqrt(((qn[:, None, :] - gn[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(d, naive, atol=1e-7)
    assert d.min() >= 0 and d.max() <= 2 + 1e-12
    assert R.euclidean_distance(qf, qf)[np.diag_indices(7)] == pytest.approx(0, abs=1e-6)


def test_similarity_is_eq2():
    assert R.similarity(0.0, 0.0) == 1.0
    assert R.similarity(1.0, 0.5, lam=2.0) == pytest.approx(0.5 + 1.0)
    assert R.similarity(3.0, 1.0, lam=0.0) == pytest.approx(0.25)


def test_bad_input():
    d, m = tied_case(9, n_q=4, n_g=10)

    def never(q, g):
        raise AssertionError("metric called before the input was checked")

    with pytest.raises(P.EvaluationInputError, match="mode must be one of"):
        R.rerank(d, never, mode="both")
    with pytest.raises(P.EvaluationInputError, match="needs the distance matrix"):
        R.rerank(None, never, mode="joint")
    with pytest.raises(P.EvaluationInputError, match="needs shape"):
        R.rerank(None, never, mode="metric")
    with pytest.raises(P.EvaluationInputError, match="callable metric_fn"):
        R.rerank(d, None, mode="joint")
    with pytest.raises(P.EvaluationInputError, match="batch_size"):
        R.rerank(d, never, batch_size=0)
    with pytest.raises(P.EvaluationInputError, match="finite"):
        R.rerank(np.full((2, 2), np.nan), never)
    with pytest.raises(P.EvaluationInputError, match="returned 3 values for 5 pairs"):
        R.rerank(d, lambda q, g: np.zeros(3), k=5, batch_size=5)
    with pytest.raises(P.EvaluationInputError, match=r"probabilities in \[0, 1\]"):
        R.rerank(d, lambda q, g: np.full(q.size, 2.0), k=5)
    with pytest.raises(P.EvaluationInputError, match="D=16.*D=8"):
        R.euclidean_distance(np.ones((2, 16)), np.ones((3, 8)))


def test_real_mars_oracle_metric_on_random_features():
    """Random F (no information), oracle M (1 for the same person): after re-scoring the
    top K, a query is right at rank 1 exactly when its top K by d holds a good match."""
    pids, cams, q = P.load_mars_kit_info(MARS_INFO)
    rng = np.random.default_rng(10)
    feats = rng.normal(size=(pids.size, 16))
    d = R.euclidean_distance(feats[q], feats)
    oracle = lambda qi, gi: (pids[q[qi]] == pids[gi]).astype(float)   # noqa: E731
    k = 100
    ranking = R.rerank(d, oracle, k=k, batch_size=50000)
    res = P.evaluate_mars_official(ranking, pids, cams, q)
    top = P.rank_order(d)[:, :k]          # == stable argsort (test_eval_protocols)
    good = (pids[top] == pids[q][:, None]) & (cams[top] != cams[q][:, None])
    assert res["ranks"]["1"] == pytest.approx(good.any(1).mean())
    base = P.evaluate_mars_official(d, pids, cams, q)
    assert res["ranks"]["1"] > 5 * base["ranks"]["1"]


def test_rank_variant_scores_each_ablation_its_way():
    d, m = tied_case(12, n_q=6, n_g=20)
    r, meta = rank_variant(VARIANTS["cnn_tam"], d)
    np.testing.assert_array_equal(r.order, np.argsort(d, 1, kind="stable"))
    assert meta["mode"] == "distance" and meta["k"] == 0
    r, meta = rank_variant(VARIANTS["all"], d, Lookup(m), k=20, lam=1.0)
    np.testing.assert_array_equal(r.order, brute_force_order(R.similarity(d, m)))
    r, meta = rank_variant(VARIANTS["cnn_srm"], None, Lookup(m), shape=m.shape)
    np.testing.assert_array_equal(r.order, brute_force_order(m))
    assert meta == {"variant": "CNN+SRM", "mode": "metric", "k": 20, "lambda": 1.0,
                    "preselected_by_d": False}


def test_protocols_reject_a_bad_ranking():
    order = np.tile(np.arange(11), (3, 1))
    order[1, 4] = 11
    bad = R.Ranking(order=order, k=0, mode="distance", lam=1.0)
    pids = np.array([1, 1, 1, -1, 0, 2, 1, 2, 3, 3, 4])
    cams = np.array([1, 2, 1, 2, 3, 2, 3, 1, 1, 1, 2])
    with pytest.raises(P.EvaluationInputError, match=r"outside \[0, 11\)"):
        P.evaluate_mars_official(bad, pids, cams, np.array([0, 7, 8]))
