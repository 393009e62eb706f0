"""The one d of the model (reid.ops.distance): triplet loss, mining and paper eq. 2 share it."""
import numpy as np
import pytest

from reid.evaluation import rerank
from reid.ops import distance, mining


def test_euclidean_distance_of_normalised_features():
    rng = np.random.default_rng(8)
    qf, gf = rng.normal(size=(7, 16)) * 5, rng.normal(size=(11, 16))
    d = distance.euclidean_distance(qf, gf)
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    naive = np.sqrt(((qn[:, None, :] - gn[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(d, naive, atol=1e-7)
    assert d.min() >= 0 and d.max() <= 2 + 1e-12
    assert distance.euclidean_distance(qf)[np.diag_indices(7)] == pytest.approx(0, abs=1e-6)


def test_unnormalised_and_zero_rows():
    f = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(distance.euclidean_distance(f, normalise=False),
                               [[0, 5], [5, 0]], atol=1e-12)
    fh, norms = distance.l2_normalize(f)
    np.testing.assert_allclose(fh, [[0.6, 0.8], [0, 0]])
    np.testing.assert_allclose(norms.ravel(), [5, distance.EPS])


def test_one_d_for_eq2_and_mining():
    """eq. 2 (rerank) and the mining use this very function, not a copy of it."""
    assert rerank.euclidean_distance is distance.euclidean_distance
    assert mining.euclidean_distance is distance.euclidean_distance


def test_bad_shapes():
    with pytest.raises(ValueError, match="D=16.*D=8"):
        distance.euclidean_distance(np.ones((2, 16)), np.ones((3, 8)))
    with pytest.raises(ValueError, match="2-D"):
        distance.euclidean_distance(np.ones(4))
