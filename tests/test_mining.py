"""In-batch negative mining (paper 4.2, docs/DESIGN.md §1.3) on hand-made batches where the
answer is known, and the mining layer wired to BatchReindex and the triplet loss in pycaffe."""
import os
import tempfile

import numpy as np

from reid.testing import net_from_prototxt
import pytest

from reid.ops import mining


def _unit(deg, scale=1.0):
    r = np.deg2rad(deg)
    return scale * np.array([np.cos(r), np.sin(r)])


def hand_pool():
    """Pool [anchors 0-1; positives 2-3; negatives 4-5] with features on the circle.

    idx angle label  role
    0   0     A      anchor 0
    1   100   B      anchor 1
    2   20    A      positive 0 (d(0, 2) = chord 20)
    3   150   B      positive 1
    4   5     A      sampled negative 0 -- same identity as anchor 0: never a negative for it
    5   40    C      sampled negative 1
    Anchor 0 (A, 0 deg): other identities 1 (100), 3 (150), 5 (40): hardest 5, at 40 deg.
    Anchor 1 (B, 100):   others 0 (100 away), 2 (80), 4 (95), 5 (60): hardest 5.
    """
    angles = [0, 100, 20, 150, 5, 40]
    scales = [1, 3, 0.5, 2, 7, 0.1]  # the mining normalises, so scale must not matter
    F = np.stack([_unit(a, s) for a, s in zip(angles, scales)])
    labels = np.array([1, 2, 1, 2, 1, 3])
    return F, labels


def test_hard_picks_nearest_other_identity():
    F, labels = hand_pool()
    got = mining.mine_negatives(F, labels, [0, 1], [2, 3], mode="hard")
    assert got.tolist() == [5, 5]


def test_hard_ignores_same_identity_even_if_nearest():
    F, labels = hand_pool()
    labels = labels.copy()
    labels[5] = 1  # now 5 is anchor 0's identity: next nearest other-identity is 1 (100 deg)
    got = mining.mine_negatives(F, labels, [0], [2], mode="hard")
    assert got.tolist() == [1]


def test_hard_uses_normalised_features():
    # Raw Euclidean distance would pick the short vector 1; the angle says 2.
    F = np.array([[1.0, 0.0], [0.05, 0.05], [10.0, 1.0]])
    got = mining.mine_negatives(F, [0, 1, 2], [0], mode="hard")
    assert got.tolist() == [2]


def test_semihard_picks_nearest_farther_than_positive():
    # Anchor 0 at 0 deg, positive at 50 deg: candidates at 30 (harder than the positive),
    # 60 and 90. Semi-hard = 60 (nearest beyond the positive); hard = 30.
    F = np.stack([_unit(0), _unit(50), _unit(30), _unit(90), _unit(60)])
    labels = [0, 0, 1, 2, 3]
    assert mining.mine_negatives(F, labels, [0], [1], mode="semihard").tolist() == [4]
    assert mining.mine_negatives(F, labels, [0], [1], mode="hard").tolist() == [2]


def test_semihard_falls_back_to_hardest():
    # Positive at 170 deg: every negative is nearer than it, so the hardest (10 deg) is used.
    F = np.stack([_unit(0), _unit(170), _unit(10), _unit(45)])
    got = mining.mine_negatives(F, [0, 0, 1, 2], [0], [1], mode="semihard")
    assert got.tolist() == [2]


def test_semihard_needs_positives():
    F, labels = hand_pool()
    with pytest.raises(ValueError, match="positives"):
        mining.mine_negatives(F, labels, [0], mode="semihard")


def test_random_is_other_identity_seedable_and_covers_pool():
    F, labels = hand_pool()
    draws = np.stack([mining.mine_negatives(F, labels, [0, 1], mode="random", rng=s)
                      for s in range(200)])
    assert set(draws[:, 0]) == {1, 3, 5}        # every other-identity entry of anchor 0
    assert set(draws[:, 1]) == {0, 2, 4, 5}
    a = mining.mine_negatives(F, labels, [0, 1], mode="random", rng=7)
    b = mining.mine_negatives(F, labels, [0, 1], mode="random", rng=7)
    assert a.tolist() == b.tolist()


def test_lonely_anchor_raises():
    F = np.eye(3)
    with pytest.raises(ValueError, match="no sequence of another identity"):
        mining.mine_negatives(F, [4, 4, 4], [0], mode="hard")


def test_bad_mode_and_index_raise():
    F, labels = hand_pool()
    with pytest.raises(ValueError, match="unknown mode"):
        mining.mine_negatives(F, labels, [0], mode="hardest")
    with pytest.raises(ValueError, match="outside the pool"):
        mining.mine_negatives(F, labels, [6], mode="hard")


# ---- the layer in a net: mining -> BatchReindex (F and pool5) -> triplet loss -------------

NET = """
force_backward: false
layer {{ name: "in" type: "Input" top: "F_a" top: "F_p" top: "F_n" {label_tops} top: "pool5_pool"
  input_param {{ shape {{ dim: {B} dim: 2 }} shape {{ dim: {B} dim: 2 }} shape {{ dim: {B} dim: 2 }}
                {label_shapes} shape {{ dim: {P} dim: 3 dim: 2 dim: 1 dim: 1 }} }} }}
layer {{ name: "F_scale" type: "Scale" bottom: "F_a" top: "F_a_s"
  param {{ lr_mult: 1 }} scale_param {{ filler {{ type: "constant" value: 1 }} }} }}
layer {{ name: "F_pool" type: "Concat" bottom: "F_a_s" bottom: "F_p" bottom: "F_n" top: "F_pool"
  concat_param {{ axis: 0 }} }}
layer {{ name: "mine" type: "Python" bottom: "F_a_s" bottom: "F_p" bottom: "F_n" {label_bottoms}
  top: "neg_index" top: "neg_label" {no_prop}
  python_param {{ module: "python_layers.pair_mining" layer: "PairMiningLayer"
                 param_str: '{{"mode": "hard"}}' }} }}
layer {{ name: "F_neg" type: "BatchReindex" bottom: "F_pool" bottom: "neg_index" top: "F_neg"
  propagate_down: true propagate_down: false }}
layer {{ name: "pool5_neg" type: "BatchReindex" bottom: "pool5_pool" bottom: "neg_index"
  top: "pool5_neg" propagate_down: true propagate_down: false }}
layer {{ name: "triplet" type: "Python" bottom: "F_a_s" bottom: "F_p" bottom: "F_neg"
  top: "loss" loss_weight: 1
  python_param {{ module: "python_layers.triplet_loss" layer: "TripletLossLayer"
                 param_str: '{{"margin": 0.3}}' }} }}
"""


def _net(B, split_labels):
    import caffe
    caffe.set_mode_cpu()
    if split_labels:
        tops = 'top: "label_a" top: "label_p" top: "label_n"'
        shapes = " ".join(["shape { dim: %d }" % B] * 3)
        bottoms = 'bottom: "label_a" bottom: "label_p" bottom: "label_n"'
        n_bottoms = 6
    else:
        tops, bottoms, n_bottoms = 'top: "label"', 'bottom: "label"', 4
        shapes = "shape { dim: %d }" % (3 * B)
    text = NET.format(B=B, P=3 * B, label_tops=tops, label_shapes=shapes, label_bottoms=bottoms,
                      no_prop=" ".join(["propagate_down: false"] * n_bottoms))
    return net_from_prototxt(text, phase=caffe.TRAIN)


@pytest.mark.parametrize("split_labels", [False, True])
def test_layer_feeds_batch_reindex_and_triplet_loss(split_labels):
    B = 2
    F, labels = hand_pool()
    net = _net(B, split_labels)
    net.blobs["F_a"].data[...] = F[:B]
    net.blobs["F_p"].data[...] = F[B:2 * B]
    net.blobs["F_n"].data[...] = F[2 * B:]
    if split_labels:
        for k, name in enumerate(("label_a", "label_p", "label_n")):
            net.blobs[name].data[...] = labels[k * B:(k + 1) * B]
    else:
        net.blobs["label"].data[...] = labels
    pool5 = np.arange(3 * B * 6, dtype=np.float32).reshape(3 * B, 3, 2, 1, 1)
    net.blobs["pool5_pool"].data[...] = pool5
    net.forward()
    assert net.blobs["neg_index"].data.tolist() == [5, 5]          # known hardest
    assert net.blobs["neg_label"].data.tolist() == [3, 3]
    np.testing.assert_array_equal(net.blobs["pool5_neg"].data, pool5[[5, 5]])
    np.testing.assert_allclose(net.blobs["F_neg"].data, F[[5, 5]], rtol=1e-6)
    # Backward runs (no gradient into the indices) and the triplet gradient reaches the
    # anchors through the mined negatives; the Scale layer's parameter gets a gradient.
    net.backward()
    assert np.abs(net.params["F_scale"][0].diff).sum() > 0
