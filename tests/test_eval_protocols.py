"""Evaluation protocols (reid/evaluation/protocols.py; docs/DESIGN.md §5, paper 4.1).

Hand-computed MARS cases (junk, distractors, a query with no match, ties), a literal
transcription of the kit's compute_AP.m as reference, the real MARS test structure
(reid/datasets/reference/mars_info) with synthetic features whose answer is known, and the
iLIDS-VID / PRID2011 split averaging.
"""
import contextlib
import json
import warnings

import numpy as np
import pytest

from reid.datasets.reference import mars_kit_info_dir, prid2011_splits_path
from reid.evaluation import protocols as P
from reid.evaluation.rerank import Ranking, euclidean_distance

MARS_INFO = mars_kit_info_dir()
PRID_SPLITS = prid2011_splits_path()


# ----------------------------------------------------------------------------- hand cases
#   idx pid cam   role
#   0    1   1    query A
#   1    1   2    good for A
#   2    1   1    junk for A (same pid, same camera)
#   3   -1   2    junk for everyone (pid -1)
#   4    0   3    distractor: an ordinary negative
#   5    2   2    good for B
#   6    1   3    good for A
#   7    2   1    query B
#   8    3   1    query C: no tracklet of pid 3 in another camera
#   9    3   1    junk for C
#   10   4   2    negative
HAND_PIDS = np.array([1, 1, 1, -1, 0, 2, 1, 2, 3, 3, 4])
HAND_CAMS = np.array([1, 2, 1, 2, 3, 2, 3, 1, 1, 1, 2])
HAND_QUERIES = np.array([0, 7, 8])


def hand_dist():
    d = np.full((3, 11), 0.9)
    # A: sorted 0 (self), 3 (pid -1), {1, 4} tied at .3 -> column 1 (good) first, 2 (junk),
    # 5, 6 (good), ...  Non-junk ranks: 1 -> 1 (hit), 4 -> 2, 5 -> 3, 6 -> 4 (hit).
    d[0] = [0.0, 0.3, 0.4, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    # B: 7 (self), 3 (pid -1), {4, 5} tied at .2 -> the distractor 4 first, good 5 second.
    d[1, [7, 3, 4, 5]] = [0.0, 0.1, 0.2, 0.2]
    # C: no good match at all.
    d[2, 8] = 0.0
    return d


def test_official_hand_case():
    with pytest.warns(UserWarning, match="no good match"):
        r = P.evaluate_mars_official(hand_dist(), HAND_PIDS, HAND_CAMS, HAND_QUERIES)
    # A: hits at non-junk ranks 1 and 4 of 2 goods: trapezoids (1 + 1)/2 and (1/3 + 2/4)/2
    ap_a = 0.5 * 1.0 + 0.5 * (1 / 3 + 2 / 4) / 2          # = 17/24
    ap_b = (0.0 + 1 / 2) / 2                                 # hit at rank 2, 1 good = 1/4
    np.testing.assert_allclose(r["per_query"]["ap"], [ap_a, ap_b, 0.0], atol=1e-15)
    assert r["per_query"]["first_match_rank"].tolist() == [1, 2, np.inf]
    assert r["mAP"] == pytest.approx((17 / 24 + 1 / 4 + 0) / 3, abs=1e-15)
    assert r["ranks"] == {"1": 1 / 3, "5": 2 / 3, "10": 2 / 3, "20": 2 / 3}
    assert r["cmc"] == pytest.approx([1 / 3] + [2 / 3] * 10)  # clipped to gallery size 11
    assert (r["num_queries"], r["num_evaluated"], r["num_no_match"], r["num_gallery"]) == \
        (3, 3, 1, 11)


def test_official_matches_kit_transcription_on_hand_case():
    d = hand_dist()
    for i, q in enumerate(HAND_QUERIES[:2]):
        good = np.flatnonzero((HAND_PIDS == HAND_PIDS[q]) & (HAND_CAMS != HAND_CAMS[q]))
        junk = np.flatnonzero((HAND_PIDS == -1)
                              | ((HAND_PIDS == HAND_PIDS[q]) & (HAND_CAMS == HAND_CAMS[q])))
        ap, cmc = P.kit_reference_ap_cmc(good, junk, np.argsort(d[i], kind="stable"))
        assert ap == pytest.approx([17 / 24, 1 / 4][i], abs=1e-15)


def test_common_hand_case():
    r = P.evaluate_mars_common(hand_dist(), HAND_PIDS, HAND_CAMS, HAND_QUERIES)
    # gallery = {1, 2, 4, 5, 6, 9, 10} (queries and pid -1 dropped); C skipped.
    # A: 1 (hit, r1), 4, [2 junk], 5, 6 (hit, r4): AP = (1/1 + 2/4) / 2
    # B: 4, 5 (hit, r2): AP = 1/2
    np.testing.assert_allclose(r["per_query"]["ap"][:2], [0.75, 0.5])
    assert r["mAP"] == pytest.approx(0.625)
    assert r["ranks"] == {"1": 0.5, "5": 1.0, "10": 1.0, "20": 1.0}
    assert (r["num_queries"], r["num_evaluated"], r["num_no_match"], r["num_gallery"]) == \
        (3, 2, 1, 7)


def test_both_protocols_are_labelled():
    res = P.evaluate_mars(hand_dist()[:2], HAND_PIDS, HAND_CAMS, HAND_QUERIES[:2])
    assert [r["protocol"] for r in res] == [P.MARS_OFFICIAL, P.MARS_COMMON]
    assert "official" in res[0]["protocol_label"] and "common" in res[1]["protocol_label"]


# ----------------------------------------------------------------------------- references
def common_reference(d, pids, cams, q):
    """Per-query loop of the common variant, written independently of the library."""
    gal = np.ones(pids.size, bool)
    gal[q] = False
    gal &= pids != -1
    cols = np.flatnonzero(gal)
    aps, firsts = [], []
    for i, qi in enumerate(q):
        ranked = cols[np.argsort(d[i, cols], kind="stable")]
        ranked = ranked[~((pids[ranked] == pids[qi]) & (cams[ranked] == cams[qi]))]
        hit = (pids[ranked] == pids[qi]) & (cams[ranked] != cams[qi])
        if not hit.any():
            continue
        r = np.flatnonzero(hit) + 1
        aps.append(np.mean(np.arange(1, r.size + 1) / r))
        firsts.append(r[0])
    return np.array(aps), np.array(firsts)


def random_case(seed, n_test=80, n_q=50, levels=5):
    rng = np.random.default_rng(seed)
    pids = rng.integers(-1, 9, n_test)
    cams = rng.integers(1, 4, n_test)
    q = rng.choice(np.flatnonzero(pids > 0), size=min(n_q, (pids > 0).sum()), replace=False)
    d = rng.integers(0, levels, (q.size, n_test)).astype(float)   # many ties
    return d, pids, cams, q


@pytest.mark.parametrize("seed", range(6))
def test_official_equals_kit_transcription_with_ties(seed, monkeypatch):
    monkeypatch.setattr(P, "_CHUNK_ROWS", 7)        # several chunks, run on 2 threads
    d, pids, cams, q = random_case(seed)
    with quiet():   # random cases may contain queries without a good match
        r = P.evaluate_mars_official(d, pids, cams, q, workers=2, max_rank=80)
    aps, cmcs = [], []
    for i, qi in enumerate(q):
        good = np.flatnonzero((pids == pids[qi]) & (cams != cams[qi]))
        junk = np.flatnonzero((pids == -1) | ((pids == pids[qi]) & (cams == cams[qi])))
        ap, cmc = P.kit_reference_ap_cmc(good, junk, np.argsort(d[i], kind="stable"))
        aps.append(0.0 if good.size == 0 else ap)     # documented: no match -> AP 0
        cmcs.append(cmc)
    np.testing.assert_allclose(r["per_query"]["ap"], aps, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["cmc"], np.mean(cmcs, 0)[:80], atol=1e-15)
    assert r["mAP"] == pytest.approx(np.mean(aps), abs=1e-12)


@contextlib.contextmanager
def quiet():
    """Tolerate the no-match warning of random cases."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("seed", range(4))
def test_common_equals_independent_loop_with_ties(seed, monkeypatch):
    monkeypatch.setattr(P, "_CHUNK_ROWS", 5)
    d, pids, cams, q = random_case(seed + 100)
    r = P.evaluate_mars_common(d, pids, cams, q, workers=2)
    aps, firsts = common_reference(d, pids, cams, q)
    valid = r["per_query"]["num_good"] > 0
    np.testing.assert_allclose(r["per_query"]["ap"][valid], aps, atol=1e-12)
    np.testing.assert_array_equal(r["per_query"]["first_match_rank"][valid], firsts)
    assert r["num_evaluated"] == aps.size
    assert r["mAP"] == pytest.approx(aps.mean(), abs=1e-12)
    assert r["ranks"]["1"] == pytest.approx(np.mean(firsts <= 1))


def test_rank_order_is_stable_argsort():
    d = np.random.default_rng(3).integers(0, 4, (300, 57)).astype(float)
    d[5] = np.random.default_rng(4).random(57)          # a row without ties
    np.testing.assert_array_equal(P.rank_order(d, workers=2), np.argsort(d, 1, kind="stable"))


def test_ranking_object_is_accepted_like_a_matrix():
    d, pids, cams, q = random_case(7)
    order = np.argsort(d, 1, kind="stable")
    ranking = Ranking(order=order, k=0, mode="distance", lam=1.0)
    with quiet():
        a = P.evaluate_mars_official(d, pids, cams, q)
        b = P.evaluate_mars_official(ranking, pids, cams, q)
    assert a["mAP"] == b["mAP"] and a["cmc"] == b["cmc"]


# ----------------------------------------------------------------------------- real MARS
@pytest.fixture(scope="module")
def mars():
    return P.load_mars_kit_info(MARS_INFO)


def test_real_mars_tables(mars):
    pids, cams, q = mars
    assert (pids.size, q.size) == (12180, 1980)
    assert P.mars_common_gallery(pids, q).sum() == 9330


def test_real_mars_synthetic_features_perfect(mars):
    """F = a random code per pid + small noise: every good ranks before any negative."""
    pids, cams, q = mars
    rng = np.random.default_rng(0)
    codes = {p: rng.normal(size=32) for p in np.unique(pids)}
    feats = np.stack([codes[p] for p in pids]) + 0.01 * rng.normal(size=(pids.size, 32))
    d = euclidean_distance(feats[q], feats)
    off, com = P.evaluate_mars(d, pids, cams, q)
    assert off["ranks"]["1"] == 1.0 and off["mAP"] == pytest.approx(1.0, abs=1e-12)
    assert (off["num_evaluated"], off["num_no_match"], off["num_gallery"]) == (1980, 0, 12180)
    assert com["ranks"]["1"] == 1.0 and com["mAP"] == pytest.approx(1.0, abs=1e-12)
    # 140 MARS queries have their only other-camera tracklets among the queries
    assert (com["num_evaluated"], com["num_no_match"], com["num_gallery"]) == (1840, 140, 9330)


def test_real_mars_planted_ranks(mars):
    """Even queries: goods first.  Odd queries: five negatives before the goods, while
    junk (self, same camera, pid -1) sits at distance 0 and must be ignored."""
    pids, cams, q = mars
    rng = np.random.default_rng(1)
    d = 1.0 + rng.random((q.size, pids.size))
    expected_ap = np.empty(q.size)
    for i, qi in enumerate(q):
        same = pids == pids[qi]
        good = same & (cams != cams[qi])
        junk = (pids == -1) | (same & (cams == cams[qi]))
        d[i, good] = 0.5
        if i % 2:
            negs = rng.choice(np.flatnonzero(~good & ~junk), 5, replace=False)
            d[i, negs] = 0.1
            d[i, junk] = 0.0
            k = np.arange(1, good.sum() + 1)
            r = 5 + k
            expected_ap[i] = np.mean(((k - 1) / (r - 1) + k / r) / 2)
        else:
            expected_ap[i] = 1.0
    r = P.evaluate_mars_official(d, pids, cams, q)
    n_even = (np.arange(q.size) % 2 == 0).sum()
    assert r["ranks"] == {"1": n_even / q.size, "5": n_even / q.size, "10": 1.0, "20": 1.0}
    assert r["cmc"][5] == 1.0 and r["cmc"][4] == n_even / q.size
    np.testing.assert_allclose(r["per_query"]["ap"], expected_ap, atol=1e-12)
    assert r["mAP"] == pytest.approx(expected_ap.mean(), abs=1e-12)


def test_real_mars_random_distances_equal_kit_transcription(mars):
    pids, cams, q = mars
    d = np.random.default_rng(2).random((q.size, pids.size))
    r = P.evaluate_mars_official(d, pids, cams, q)
    for i in range(0, q.size, 97):       # 21 queries through the slow literal loop
        qi = q[i]
        good = np.flatnonzero((pids == pids[qi]) & (cams != cams[qi]))
        junk = np.flatnonzero((pids == -1) | ((pids == pids[qi]) & (cams == cams[qi])))
        ap, cmc = P.kit_reference_ap_cmc(good, junk, np.argsort(d[i], kind="stable"))
        assert r["per_query"]["ap"][i] == pytest.approx(ap, abs=1e-12)
        assert r["per_query"]["first_match_rank"][i] == np.argmax(cmc > 0) + 1


# ----------------------------------------------------------------------------- bad input
@pytest.fixture
def no_compute(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the computation started before the input was checked")
    monkeypatch.setattr(P, "_evaluate_core", boom)
    monkeypatch.setattr(P, "_two_camera_one", boom)


@pytest.mark.parametrize("fn", [P.evaluate_mars_official, P.evaluate_mars_common])
def test_mars_bad_input_fails_before_computing(fn, no_compute):
    d = hand_dist()
    with pytest.raises(P.EvaluationInputError, match=r"shape \(3, 10\).*\(3, 11\)"):
        fn(d[:, :10], HAND_PIDS, HAND_CAMS, HAND_QUERIES)
    with pytest.raises(P.EvaluationInputError, match="pids .* and cams .* differ"):
        fn(d, HAND_PIDS, HAND_CAMS[:-1], HAND_QUERIES)
    with pytest.raises(P.EvaluationInputError, match="out of range"):
        fn(d, HAND_PIDS, HAND_CAMS, np.array([0, 7, 11]))
    bad = d.copy()
    bad[1, 2] = np.nan
    with pytest.raises(P.EvaluationInputError, match="NaN"):
        fn(bad, HAND_PIDS, HAND_CAMS, HAND_QUERIES)
    with pytest.raises(P.EvaluationInputError, match="pid -1"):
        fn(d, HAND_PIDS, HAND_CAMS, np.array([0, 3, 8]))


def test_load_mars_kit_info_missing_file(tmp_path):
    with pytest.raises(P.EvaluationInputError, match="tracks_test_info.mat: MARS kit table"):
        P.load_mars_kit_info(tmp_path)


# ----------------------------------------------------------------------------- 2 cameras
def test_two_camera_single_split_hand_case():
    probe = np.array([10, 11, 12])
    gallery = np.array([12, 10, 11])
    d = np.array([[0.5, 0.1, 0.9],     # 10 -> gallery col 1, rank 1
                  [0.2, 0.3, 0.2],     # 11 -> col 2 tied with col 0 (lower first): rank 2
                  [0.7, 0.1, 0.2]])    # 12 -> col 0, rank 3
    r = P.evaluate_two_camera(d, probe, gallery)
    assert r["per_query"]["first_match_rank"].tolist() == [1, 2, 3]
    assert r["cmc"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert r["mAP"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


def prid_tracklets():
    splits = json.loads(PRID_SPLITS.read_text())
    persons = sorted({p for s in splits for p in s["test"] + s["train"]})
    pids = np.array(persons * 2)
    cams = np.array(["cam_a"] * len(persons) + ["cam_b"] * len(persons))
    return splits, pids, cams


def planted_split(probe_pids, gallery_pids, n_rank1, rng):
    """Distances where the first ``n_rank1`` probes match at rank 1, the rest at rank 3."""
    n = probe_pids.size
    d = 1.0 + rng.random((n, gallery_pids.size))
    for i, p in enumerate(probe_pids):
        j = np.flatnonzero(gallery_pids == p)[0]
        if i < n_rank1:
            d[i, j] = 0.0
        else:
            others = rng.choice(np.setdiff1d(np.arange(gallery_pids.size), [j]), 2, False)
            d[i, others] = 0.1
            d[i, j] = 0.5
    return d


def test_prid_ten_split_mean_and_std():
    splits, pids, cams = prid_tracklets()
    rng = np.random.default_rng(5)
    entries, r1 = [], []
    for s, sp in enumerate(splits):
        pi, gi = P.two_camera_split_indices(pids, cams, np.array(sp["test"]), "cam_a", "cam_b",
                                            split=s)
        assert (cams[pi] == "cam_a").all() and (pids[pi] == pids[gi]).all()
        n1 = 40 + 3 * s
        entries.append((planted_split(pids[pi], pids[gi], n1, rng), pids[pi], pids[gi]))
        r1.append(n1 / 89)
    res = P.evaluate_two_camera_splits(entries, dataset="prid2011")
    assert res["num_splits"] == 10
    assert res["ranks"]["1"] == pytest.approx(np.mean(r1))
    assert res["ranks_std"]["1"] == pytest.approx(np.std(r1))
    assert res["ranks"]["5"] == pytest.approx(1.0) and res["ranks_std"]["5"] == 0.0
    ap = [(n / 89) + (89 - n) / 89 / 3 for n in (40 + 3 * np.arange(10))]
    assert res["mAP"] == pytest.approx(np.mean(ap))
    assert [p["split"] for p in res["per_split"]] == list(range(10))
    assert res["cmc"][1] == pytest.approx(np.mean(r1)) and res["cmc"][2] == pytest.approx(1.0)
    # as a mapping keyed by split id, with ddof=1
    res1 = P.evaluate_two_camera_splits(dict(enumerate(entries)), dataset="prid2011", ddof=1)
    assert res1["ranks_std"]["1"] == pytest.approx(np.std(r1, ddof=1))


def test_ilids_structure_split_averaging():
    """iLIDS-VID layout: ls_set-like permutations over 300 persons, first 150 test."""
    rng = np.random.default_rng(6)
    persons = np.arange(1, 301)
    pids = np.concatenate([persons, persons])
    cams = np.repeat([1, 2], 300)
    entries, r1 = [], []
    for s in range(10):
        test = persons[rng.permutation(300)[:150]]
        pi, gi = P.two_camera_split_indices(pids, cams, test, 1, 2)
        n1 = int(rng.integers(60, 120))
        entries.append({"dist": planted_split(pids[pi], pids[gi], n1, rng),
                        "probe_pids": pids[pi], "gallery_pids": pids[gi]})
        r1.append(n1 / 150)
    res = P.evaluate_two_camera_splits(entries, dataset="ilidsvid")
    assert res["ranks"]["1"] == pytest.approx(np.mean(r1))
    assert res["ranks_std"]["1"] == pytest.approx(np.std(r1))


def test_splits_bad_input_fails_before_computing(no_compute):
    splits, pids, cams = prid_tracklets()
    entries = []
    for sp in splits:
        pi, gi = P.two_camera_split_indices(pids, cams, np.array(sp["test"]), "cam_a", "cam_b")
        entries.append((np.zeros((89, 89)), pids[pi], pids[gi]))
    with pytest.raises(P.EvaluationInputError, match="got 9 splits, expected 10"):
        P.evaluate_two_camera_splits(entries[:9], dataset="prid2011")
    with pytest.raises(P.EvaluationInputError, match=r"split\(s\) \[4\] missing"):
        P.evaluate_two_camera_splits({i: e for i, e in enumerate(entries) if i != 4},
                                     dataset="prid2011")
    with pytest.raises(P.EvaluationInputError, match=r"split\(s\) \[2\] missing"):
        P.evaluate_two_camera_splits(entries[:2] + [None] + entries[3:], dataset="prid2011")
    bad = list(entries)
    bad[7] = (np.zeros((89, 88)), bad[7][1], bad[7][2])
    with pytest.raises(P.EvaluationInputError, match=r"split 7.*\(89, 88\).*\(89, 89\)"):
        P.evaluate_two_camera_splits(bad, dataset="prid2011")
    bad = list(entries)
    bad[3] = (bad[3][0], bad[3][1], np.full(89, bad[3][2][0]))   # one person repeated
    with pytest.raises(P.EvaluationInputError, match="split 3.*no gallery match"):
        P.evaluate_two_camera_splits(bad, dataset="prid2011")


def test_split_indices_missing_camera():
    pids = np.array([1, 2, 1])
    cams = np.array([1, 1, 2])
    with pytest.raises(P.EvaluationInputError, match=r"split 0: 1 test pids have no tracklet "
                                                      r"in camera 2"):
        P.two_camera_split_indices(pids, cams, np.array([1, 2]), 1, 2, split=0)
