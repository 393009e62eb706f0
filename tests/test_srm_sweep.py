"""The SRM's six-direction spatial LSTM sweep (paper 3.3, Fig. 5-7; docs/DESIGN.md §1.2, §2).

- NumPy (reid.ops.spatial_lstm): an independent line-by-line reference, numerical gradients
  of the input and all 18 parameter arrays, sizes of 1 on every axis, non-square maps, N = 1.
- Python layer vs native layer through pycaffe: forward, backward, parameter gradients, and
  weights moving between them through a caffemodel.
- Every direction of the native layer equals Caffe's own LSTM layer on the permuted volume
  with the same weights (forward and backward).
- The native gtest binary (numerical gradients of the C++ layer) passes.
"""
import subprocess

import numpy as np
import pytest

from reid.ops import spatial_lstm as sl
from reid.benchmarks.srm import _shape, sweep_prototxt
from reid.testing import gtest_command, net_from_prototxt, numeric_gradient

# (N, C, T, H, W): non-square, sizes of 1 on each axis, N = 1
SHAPES = [(2, 3, 3, 2, 4), (1, 2, 1, 3, 2), (1, 2, 3, 1, 2), (1, 2, 2, 3, 1), (1, 1, 2, 2, 2),
          (1, 1, 1, 1, 1)]
WEIGHTS = {"type": "gaussian", "std": 0.4}
BIASES = {"type": "gaussian", "std": 0.2}


def _params(C, Hd, seed, dtype=np.float64):
    return sl.init_params(C, Hd, seed, WEIGHTS, BIASES, dtype=dtype)


# ---- NumPy --------------------------------------------------------------------------------

def naive_sweep(x, params):
    """Line-by-line reference: for every direction and every line, a plain LSTM loop."""
    N, C, T, H, W = x.shape
    Hd = params[2].shape[1]
    top = np.zeros((N, 6 * Hd, T, H, W))
    axes = {"T": 2, "H": 3, "W": 4}
    sig = lambda z: 1 / (1 + np.exp(-z))
    for d, name in enumerate(sl.DIRECTIONS):
        W_xc, b_c, W_hc = params[3 * d:3 * d + 3]
        axis = axes[name[0]]
        xm = np.moveaxis(x, axis, 2)                       # (N, C, L, o1, o2)
        out = np.moveaxis(top[:, d * Hd:(d + 1) * Hd], axis, 2)  # a view into top
        L = xm.shape[2]
        order = range(L - 1, -1, -1) if name[1] == "-" else range(L)
        for n in range(N):
            for i1 in range(xm.shape[3]):
                for i2 in range(xm.shape[4]):
                    h, c = np.zeros(Hd), np.zeros(Hd)
                    for pos in order:
                        z = W_xc @ xm[n, :, pos, i1, i2] + b_c + W_hc @ h
                        i, f, o = sig(z[:Hd]), sig(z[Hd:2 * Hd]), sig(z[2 * Hd:3 * Hd])
                        g = np.tanh(z[3 * Hd:])
                        c = f * c + i * g
                        h = o * np.tanh(c)
                        out[n, :, pos, i1, i2] = h
    return top


@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_matches_line_by_line_reference(shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    p = _params(shape[1], 3, 2)
    y, _ = sl.sweep_forward(x, p)
    assert y.shape == (shape[0], 18) + shape[2:]
    np.testing.assert_allclose(y, naive_sweep(x, p), atol=1e-12)


def test_directions_differ():
    # Each direction sees a different context: the six outputs must not coincide.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 2, 3, 3, 3))
    p = _params(2, 2, 0)
    for k in range(0, 18, 3):  # the same weights in every direction
        p[k], p[k + 1], p[k + 2] = p[0], p[1], p[2]
    y, _ = sl.sweep_forward(x, p)
    outs = [y[:, 2 * d:2 * d + 2] for d in range(6)]
    for a in range(6):
        for b in range(a + 1, 6):
            assert not np.allclose(outs[a], outs[b])



@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_numerical_gradients(shape):
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape)
    p = _params(shape[1], 2, 5)
    y, cache = sl.sweep_forward(x, p)
    R = rng.normal(size=y.shape)
    dx, grads = sl.sweep_backward(R, cache)
    f = lambda: float((sl.sweep_forward(x, p)[0] * R).sum())
    np.testing.assert_allclose(dx, numeric_gradient(f, x), atol=1e-8, rtol=1e-6)
    assert len(grads) == 18
    for k in range(18):
        np.testing.assert_allclose(grads[k], numeric_gradient(f, p[k]), atol=1e-8, rtol=1e-6,
                                   err_msg="parameter blob %d (%s)" % (k, sl.DIRECTIONS[k // 3]))


def test_lines_roundtrip():
    x = np.arange(2 * 3 * 4 * 5 * 6, dtype=float).reshape(2, 3, 4, 5, 6)
    for d in sl.DIRECTIONS:
        lines = sl.to_lines(x, d)
        assert lines.shape[0] == x.shape[sl.direction_axis(d)[0]]
        np.testing.assert_array_equal(sl.from_lines(lines, d, x.shape), x)


def test_default_fillers():
    p = sl.init_params(5, 4, 0)
    assert [a.shape for a in p[:3]] == [(16, 5), (16,), (16, 4)]
    for k, a in enumerate(p):
        if k % 3 == 1:
            assert np.all(a == 0)
        else:
            assert a.min() >= -0.08 and a.max() <= 0.08 and a.std() > 0


def test_bad_params_raise():
    p = sl.init_params(3, 2, 0)
    with pytest.raises(ValueError, match="W_xc has shape"):
        sl.sweep_forward(np.zeros((1, 4, 1, 1, 1)), p)
    with pytest.raises(ValueError, match="18 parameter"):
        sl.sweep_forward(np.zeros((1, 3, 1, 1, 1)), p[:3])


# ---- pycaffe: Python layer vs native layer, and Caffe's own LSTM ---------------------------

def sweep_net(shape, hd, python):
    return sweep_prototxt(shape, hd, python, python_params={"seed": 3}, native_params=(
        'weight_filler { type: "gaussian" std: 0.4 } bias_filler { type: "gaussian" std: 0.2 }'))


def _run(net, x, dy):
    net.blobs["x"].data[...] = x
    for p in net.params["sweep"]:
        p.diff[...] = 0
    net.forward()
    net.blobs["y"].diff[...] = dy
    net.backward()
    return (net.blobs["y"].data.copy(), net.blobs["x"].diff.copy(),
            [p.diff.copy() for p in net.params["sweep"]])


@pytest.mark.parametrize("shape", [(2, 3, 3, 2, 4), (1, 2, 1, 3, 1), (1, 1, 1, 1, 1)])
def test_python_layer_equals_native_layer(shape):
    hd = 3
    native = net_from_prototxt(sweep_net(shape, hd, python=False))
    py = net_from_prototxt(sweep_net(shape, hd, python=True))
    assert len(native.params["sweep"]) == len(py.params["sweep"]) == 18
    for a, b in zip(native.params["sweep"], py.params["sweep"]):
        assert a.data.shape == b.data.shape
        b.data[...] = a.data
    rng = np.random.default_rng(7)
    x = rng.normal(size=shape).astype(np.float32)
    dy = rng.normal(size=native.blobs["y"].data.shape).astype(np.float32)
    y0, dx0, g0 = _run(native, x, dy)
    y1, dx1, g1 = _run(py, x, dy)
    np.testing.assert_allclose(y1, y0, atol=2e-6)
    np.testing.assert_allclose(dx1, dx0, atol=1e-5, rtol=1e-5)
    for k in range(18):
        np.testing.assert_allclose(g1[k], g0[k], atol=1e-5, rtol=1e-5, err_msg="blob %d" % k)
    # and both equal the float64 NumPy reference
    params64 = [p.data.astype(np.float64) for p in native.params["sweep"]]
    ref, _ = sl.sweep_forward(x.astype(np.float64), params64)
    np.testing.assert_allclose(y0, ref, atol=2e-6)


def test_weights_move_between_python_and_native(tmp_path):
    shape, hd = (1, 2, 2, 3, 2), 2
    native = net_from_prototxt(sweep_net(shape, hd, python=False))
    path = str(tmp_path / "native.caffemodel")
    native.save(path)
    py = net_from_prototxt(sweep_net(shape, hd, python=True), weights=path)
    for a, b in zip(native.params["sweep"], py.params["sweep"]):
        np.testing.assert_array_equal(a.data, b.data)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    native.blobs["x"].data[...] = x
    py.blobs["x"].data[...] = x
    np.testing.assert_allclose(py.forward()["y"], native.forward()["y"], atol=2e-6)
    # and back: the Python layer's blobs load into the native layer
    for b in py.params["sweep"]:
        b.data[...] *= -1
    path2 = str(tmp_path / "python.caffemodel")
    py.save(path2)
    native2 = net_from_prototxt(sweep_net(shape, hd, python=False), weights=path2)
    for a, b in zip(native2.params["sweep"], py.params["sweep"]):
        np.testing.assert_array_equal(a.data, b.data)


def test_python_layer_params():
    from python_layers.spatial_lstm import parse_params
    p = parse_params('{"num_output": 4, "weight_std": 0.01}')
    assert p["num_output"] == 4 and p["weight_filler"] == {"type": "gaussian", "std": 0.01}
    assert parse_params('{"num_output": 2}')["weight_filler"] == sl.DEFAULT_WEIGHT_FILLER
    for bad in ('{}', '{"num_output": 0}', '{"num_output": 2, "hidden": 3}'):
        with pytest.raises(ValueError, match="SpatialLSTMLayer param_str"):
            parse_params(bad)


def lstm_net(L, lines, C, hd):
    return ("force_backward: true\n"
            'layer { name: "in" type: "Input" top: "x" top: "cont" input_param { %s %s } }\n'
            'layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h" '
            "recurrent_param { num_output: %d } }" % (_shape((L, lines, C)), _shape((L, lines)), hd))


def _permute(v, direction):
    """Volume (N, K, T, H, W) -> (L, lines, K) time-major, written with moveaxis only."""
    axis = {"T": 2, "H": 3, "W": 4}[direction[0]]
    m = np.moveaxis(v, [axis, 1], [0, -1])  # (L, N, o1, o2, K)
    m = m.reshape(m.shape[0], -1, m.shape[-1])
    return m[::-1] if direction[1] == "-" else m


@pytest.mark.parametrize("shape", [(2, 3, 3, 4, 5), (1, 2, 1, 2, 3)])
def test_each_direction_equals_caffe_lstm(shape):
    hd = 4
    N, C = shape[:2]
    native = net_from_prototxt(sweep_net(shape, hd, python=False))
    rng = np.random.default_rng(11)
    x = rng.normal(size=shape).astype(np.float32)
    for d, direction in enumerate(sl.DIRECTIONS):
        dy = np.zeros(native.blobs["y"].data.shape, np.float32)
        dy[:, d * hd:(d + 1) * hd] = rng.normal(size=dy[:, d * hd:(d + 1) * hd].shape)
        y, dx, grads = _run(native, x, dy)
        xl = _permute(x, direction)
        L, lines = xl.shape[:2]
        lstm = net_from_prototxt(lstm_net(L, lines, C, hd))
        for k in range(3):
            lstm.params["lstm"][k].data[...] = native.params["sweep"][3 * d + k].data
            lstm.params["lstm"][k].diff[...] = 0
        lstm.blobs["x"].data[...] = xl
        cont = np.ones((L, lines), np.float32)
        cont[0] = 0  # every line starts at step 0: h_0 = c_0 = 0
        lstm.blobs["cont"].data[...] = cont
        lstm.forward()
        want = _permute(y[:, d * hd:(d + 1) * hd], direction)
        np.testing.assert_allclose(lstm.blobs["h"].data, want, atol=2e-6, err_msg=direction)
        lstm.blobs["h"].diff[...] = _permute(dy[:, d * hd:(d + 1) * hd], direction)
        lstm.backward()
        np.testing.assert_allclose(lstm.blobs["x"].diff, _permute(dx, direction), atol=1e-5,
                                   rtol=1e-5, err_msg=direction)
        for k in range(3):
            np.testing.assert_allclose(lstm.params["lstm"][k].diff, grads[3 * d + k], atol=1e-5,
                                       rtol=1e-5, err_msg="%s blob %d" % (direction, k))


# ---- the native gtest binary -----------------------------------------------------------

def test_native_gtest_passes():
    r = subprocess.run(gtest_command("*SpatialLSTM*"), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "[  PASSED  ]" in r.stdout and "SpatialLSTM" in r.stdout


def test_bench_runs_small():
    from reid.benchmarks import srm
    table = srm.main(["--n", "1", "--c", "3", "--t", "2", "--h", "2", "--w", "3", "--hd", "2",
                      "--repeats", "1"])
    assert "native" in table and "Caffe LSTM" in table
