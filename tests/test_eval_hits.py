"""The protocols without a sort (reid.evaluation.hits.by_ranks) equal the full-sort
reference (hits.by_sort) to the last bit, on random data full of ties (docs/DESIGN.md §5)."""
import warnings

import numpy as np
import pytest

from reid.evaluation import hits
from reid.evaluation import protocols as P


def assert_same(a, b):
    assert a["protocol"] == b["protocol"]
    for key in ("ap", "first_match_rank", "num_good"):
        if key in a["per_query"]:
            np.testing.assert_array_equal(a["per_query"][key], b["per_query"][key])
    assert a["cmc"] == b["cmc"] and a["ranks"] == b["ranks"]
    assert a["mAP"] == b["mAP"] or (np.isnan(a["mAP"]) and np.isnan(b["mAP"]))


def mars_case(seed):
    rng = np.random.default_rng(seed)
    n_test = int(rng.integers(30, 300))
    n_pid = int(rng.integers(2, 30))
    pids = rng.integers(-1, n_pid, n_test)
    cams = rng.integers(1, int(rng.integers(2, 7)), n_test)
    persons = np.flatnonzero(pids > 0)
    q = rng.choice(persons, size=int(rng.integers(1, persons.size + 1)), replace=False)
    kind = seed % 4
    if kind == 0:       # few levels: ties everywhere, also between goods, junk and others
        d = rng.integers(0, 4, (q.size, n_test)).astype(float)
    elif kind == 1:     # continuous, with planted exact ties and infinities
        d = rng.normal(size=(q.size, n_test))
        d[rng.random(d.shape) < 0.1] = 0.5
        d[rng.random(d.shape) < 0.02] = np.inf
        d[rng.random(d.shape) < 0.02] = -np.inf
    elif kind == 2:     # integer matrix
        d = rng.integers(-3, 3, (q.size, n_test))
    else:               # float32, a little rounding
        d = np.round(rng.random((q.size, n_test)), 2).astype(np.float32)
    return d, pids, cams, q


@pytest.mark.parametrize("seed", range(40))
def test_mars_ranks_equal_full_sort(seed, monkeypatch):
    monkeypatch.setattr(P, "_CHUNK_ROWS", 1 + seed % 9)     # chunks of 1..9 rows
    d, pids, cams, q = mars_case(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                    # queries without a good match
        try:
            want = P.evaluate_mars(d, pids, cams, q, method="sort", max_rank=400, workers=2)
        except P.EvaluationInputError as e:                # common: no query has a match
            with pytest.raises(P.EvaluationInputError, match=str(e).split(":")[-1].strip()):
                P.evaluate_mars(d, pids, cams, q, method="ranks", max_rank=400)
            return
        got = P.evaluate_mars(d, pids, cams, q, max_rank=400, workers=2)
        alone = P.evaluate_mars_official(d, pids, cams, q, max_rank=400)
    for a, b in zip(got, want):
        assert_same(a, b)
    assert_same(alone, want[0])


def test_many_candidates_per_query():
    """A person with more than 255 tracklets: the bucket counters switch to 16 bits."""
    rng = np.random.default_rng(3)
    pids = np.r_[np.full(300, 1), rng.integers(2, 6, 200)]
    cams = rng.integers(1, 4, pids.size)
    q = np.array([0, 5, 300, 301])
    d = rng.integers(0, 50, (q.size, pids.size)).astype(float)
    for a, b in zip(P.evaluate_mars(d, pids, cams, q),
                    P.evaluate_mars(d, pids, cams, q, method="sort")):
        assert_same(a, b)


@pytest.mark.parametrize("seed", range(10))
def test_two_camera_ranks_equal_full_sort(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(3, 60))
    gp = rng.permutation(n)
    pp = rng.permutation(n)[: int(rng.integers(1, n + 1))]
    d = rng.integers(0, 3 + seed, (pp.size, n)).astype(float)
    assert_same(P.evaluate_two_camera(d, pp, gp), P.evaluate_two_camera(d, pp, gp,
                                                                          method="sort"))


def test_buckets_hand_case():
    """Row [.2 .1 .2 .3 .2] with candidates at columns 2 and 4 (both .2).  In (value,
    column) order the row is 1, 0, 2, 4, 3: columns 1 and 0 come before candidate 2, columns
    1, 0, 2 before candidate 4; b counts the candidates at or before each column."""
    d = np.array([[0.2, 0.1, 0.2, 0.3, 0.2]])
    vals, cols, n = hits._sorted_candidates(d, np.array([[4, 2]]), np.array([[True, True]]))
    assert cols.tolist() == [[2, 4]] and n.tolist() == [2]
    b = hits._buckets_below(d, vals)[0]
    hits._fix_ties(b, d[0], np.append(vals[0], np.nan), cols[0], 2)
    assert b.tolist() == [0, 0, 1, 2, 2]
    assert hits._before(b, 2).tolist() == [2, 3]


def test_unknown_method():
    with pytest.raises(P.EvaluationInputError, match="method must be one of"):
        P.evaluate_mars(np.zeros((1, 3)), [1, 1, 2], [1, 2, 1], [0], method="heap")
