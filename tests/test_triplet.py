"""Triplet loss on L2-normalised features (paper 3.2, docs/DESIGN.md §1.3): hand-computed values,
numerical gradients, and the Python layer through pycaffe."""
import os
import tempfile

import numpy as np
import pytest

from reid.ops import triplet
from reid.testing import net_from_prototxt, numeric_gradient


def _unit(deg, scale=1.0):
    r = np.deg2rad(deg)
    return scale * np.array([np.cos(r), np.sin(r)])


def _chord(deg):
    # Euclidean distance of two unit vectors deg apart
    return 2 * np.sin(np.deg2rad(deg) / 2)


def hand_batch():
    """Three triplets on the unit circle (scaled: the loss must normalise).
    Triplet 0: a 0, p 90, n 45  -> violates, l = chord(90) - chord(45) + m
    Triplet 1: a 0, p 60, n 30  -> violates, l = chord(60) - chord(30) + m
    Triplet 2: a 0, p 10, n 180 -> satisfied"""
    a = np.stack([_unit(0, 3), _unit(0, 0.5), _unit(0, 7)])
    p = np.stack([_unit(90, 2), _unit(60, 1), _unit(10, 4)])
    n = np.stack([_unit(45, 0.2), _unit(30, 9), _unit(180, 1)])
    return a, p, n


def test_hand_computed_value():
    a, p, n = hand_batch()
    m = 0.3
    l0 = _chord(90) - _chord(45) + m
    l1 = _chord(60) - _chord(30) + m
    loss, frac, _ = triplet.triplet_forward(a, p, n, margin=m)
    assert l0 > 0 and l1 > 0
    assert loss == pytest.approx((l0 + l1) / 2, abs=1e-12)  # mean over the 2 violating only
    assert frac == pytest.approx(2 / 3)


def test_plain_distance_not_squared():
    # One violating triplet: the loss is d_ap - d_an + m with plain (unsquared) distances.
    a, p, n = _unit(0)[None], _unit(120)[None], _unit(60)[None]
    loss, _, _ = triplet.triplet_forward(a, p, n, margin=0.3)
    assert loss == pytest.approx(np.sqrt(3) - 1 + 0.3, abs=1e-12)


def test_no_violation_gives_zero_loss_and_gradient():
    a, p, n = _unit(0)[None], _unit(5)[None], _unit(180)[None]
    loss, frac, cache = triplet.triplet_forward(a, p, n, margin=0.3)
    assert loss == 0 and frac == 0
    for g in triplet.triplet_backward(cache):
        assert np.all(g == 0)



def test_numerical_gradient():
    rng = np.random.default_rng(3)
    B, D, m = 7, 5, 0.3
    a, p, n = (rng.normal(size=(B, D)) for _ in range(3))
    loss, frac, cache = triplet.triplet_forward(a, p, n, margin=m)
    # Keep every triplet away from the hinge so the violating set is stable under eps.
    l = cache[8] - cache[9] + m
    assert np.all(np.abs(l) > 1e-3) and 0 < frac < 1
    da, dp, dn = triplet.triplet_backward(cache, dloss=1.7)
    f = lambda: 1.7 * triplet.triplet_forward(a, p, n, margin=m)[0]
    for x, g in ((a, da), (p, dp), (n, dn)):
        np.testing.assert_allclose(g, numeric_gradient(f, x), atol=1e-8, rtol=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="shapes differ"):
        triplet.triplet_forward(np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 3)))


NET = """
force_backward: true
layer {{ name: "in" type: "Input" top: "a" top: "p" top: "n"
  input_param {{ shape {{ dim: {B} dim: {D} }} shape {{ dim: {B} dim: {D} }}
                 shape {{ dim: {B} dim: {D} }} }} }}
layer {{ name: "triplet" type: "Python" bottom: "a" bottom: "p" bottom: "n"
  top: "loss" top: "violating" loss_weight: {w} loss_weight: 0
  python_param {{ module: "python_layers.triplet_loss" layer: "TripletLossLayer"
                 param_str: '{{"margin": {m}}}' }} }}
"""



def test_python_layer_through_pycaffe():
    rng = np.random.default_rng(5)
    B, D, m, w = 6, 4, 0.5, 2.0
    net = net_from_prototxt(NET.format(B=B, D=D, m=m, w=w))
    a, p, n = (rng.normal(size=(B, D)).astype(np.float32) for _ in range(3))
    for name, x in zip("apn", (a, p, n)):
        net.blobs[name].data[...] = x
    out = net.forward()
    loss, frac, cache = triplet.triplet_forward(a.astype(np.float64), p.astype(np.float64),
                                                n.astype(np.float64), margin=m)
    assert 0 < frac < 1
    assert out["loss"].item() == pytest.approx(loss, rel=1e-5)
    assert out["violating"].item() == pytest.approx(frac)
    net.backward()
    for name, g in zip("apn", triplet.triplet_backward(cache, dloss=w)):
        np.testing.assert_allclose(net.blobs[name].diff, g, atol=1e-6, rtol=1e-4)
