"""AttentionAverage (TAM, paper 3.2 eq. 3): NumPy reference, Python layer, native layer."""
import subprocess

import numpy as np
import pytest

from reid.ops.attention import attention_average_backward, attention_average_forward
from reid.testing import gtest_command, net_from_prototxt, numeric_gradient


def _loss(x, s, c, cw, axis=1):
    y, w = attention_average_forward(x, s, axis)
    return float((y * c).sum() + (w * cw).sum())


@pytest.mark.parametrize("shape,axis", [((3, 4, 5), 1), ((1, 1, 3), 1), ((2, 3, 2, 2), 1),
                                        ((2, 3, 4), 2)])
def test_numpy_gradients(shape, axis):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    s = rng.normal(size=shape[:axis + 1])
    y, w = attention_average_forward(x, s, axis)
    c, cw = rng.normal(size=y.shape), rng.normal(size=w.shape)
    dx, ds = attention_average_backward(x, w, c, cw, axis)
    np.testing.assert_allclose(dx, numeric_gradient(lambda: _loss(x, s, c, cw, axis), x),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ds, numeric_gradient(lambda: _loss(x, s, c, cw, axis), s),
                               rtol=1e-6, atol=1e-8)


def test_forward_by_hand():
    x = np.array([[[1.0, 0.0], [0.0, 2.0]]])   # N=1, T=2, D=2
    s = np.array([[0.0, np.log(3.0)]])        # weights 1/4, 3/4
    y, w = attention_average_forward(x, s)
    np.testing.assert_allclose(w, [[0.25, 0.75]])
    np.testing.assert_allclose(y, [[0.25, 1.5]])


def test_large_scores_do_not_overflow():
    x = np.ones((2, 3, 4))
    y, w = attention_average_forward(x, np.array([[1e4, 1e4 + 1, 1e4 - 1], [-1e4, 0, 1e4]]))
    assert np.isfinite(y).all() and np.isfinite(w).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="does not match"):
        attention_average_forward(np.zeros((2, 3, 4)), np.zeros((2, 4)))


NET = """
force_backward: true
input: "x" input_shape {{ dim: {n} dim: {t} dim: {d} }}
input: "s" input_shape {{ dim: {n} dim: {t} }}
layer {{ name: "att" bottom: "x" bottom: "s" top: "y" top: "w" {layer} }}
"""
PYTHON = ('type: "Python" python_param { module: "python_layers.attention_average" '
          'layer: "AttentionAverageLayer" }')
NATIVE = 'type: "AttentionAverage"'


def _run(layer, x, s, dy, dw):
    net = net_from_prototxt(NET.format(n=x.shape[0], t=x.shape[1], d=x.shape[2], layer=layer))
    net.blobs["x"].data[...] = x
    net.blobs["s"].data[...] = s
    net.forward()
    net.blobs["y"].diff[...] = dy
    net.blobs["w"].diff[...] = dw
    net.backward()
    return [net.blobs[b].data.copy() for b in ("y", "w")] + \
        [net.blobs[b].diff.copy() for b in ("x", "s")]


@pytest.mark.parametrize("n,t,d,scale", [(4, 6, 16, 1.0), (1, 6, 8, 1.0), (3, 1, 5, 1.0),
                                         (2, 6, 8, 1e4)])
def test_python_and_native_agree(n, t, d, scale):
    import caffe
    caffe.set_mode_cpu()
    rng = np.random.default_rng(n * 100 + t)
    args = (rng.normal(size=(n, t, d)), scale * rng.normal(size=(n, t)),
            rng.normal(size=(n, d)), rng.normal(size=(n, t)))
    py, native = _run(PYTHON, *args), _run(NATIVE, *args)
    for name, a, b in zip(("y", "w", "dx", "ds"), py, native):
        assert np.isfinite(a).all(), name
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=name)
    # and both equal the float64 reference
    y, w = attention_average_forward(args[0], args[1])
    np.testing.assert_allclose(native[0], y, rtol=1e-4, atol=1e-5)


def test_native_gtests_pass():
    out = subprocess.run(gtest_command("*AttentionAverage*"),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "PASSED" in out.stdout and "FAILED" not in out.stdout
