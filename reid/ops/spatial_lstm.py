"""Six-direction spatial LSTM sweep of the SRM (paper 3.3, Fig. 5-7; docs/DESIGN.md §1.2), in NumPy.

Bottom: a volume x of shape (N, C, T, H, W). Six LSTMs, one per direction in
``DIRECTIONS`` = (T+, T-, W+, W-, H+, H-), sweep every line of the volume along one axis
(T forward and backward, W left to right and back, H top to bottom and back). The output
at each position is that direction's hidden state at that position (Fig. 6: outputs are
placed in the same order as the inputs), and the six outputs are stacked along channels:
top (N, 6*Hd, T, H, W), channels [d*Hd:(d+1)*Hd] = direction d.

Each direction is exactly Caffe's own LSTM layer (src/caffe/layers/lstm_layer.cpp and
lstm_unit_layer.cpp) run over that direction's lines with h_0 = c_0 = 0 at the start of
every line:

    gates = W_xc x_s + b_c + W_hc h_{s-1}              (W_hc has no bias)
    i, f, o = sigmoid(gates[0:Hd]), sigmoid(gates[Hd:2Hd]), sigmoid(gates[2Hd:3Hd])
    g = tanh(gates[3Hd:4Hd])
    c_s = f * c_{s-1} + i * g,   h_s = o * tanh(c_s)

Parameters: 18 arrays, direction-major [W_xc_d (4Hd, C), b_c_d (4Hd,), W_hc_d (4Hd, Hd)]
for d in DIRECTIONS -- the same blobs, in the same order, as the native "SpatialLSTM" layer
and python_layers.spatial_lstm.SpatialLSTMLayer, so weights move between them.

Vectorised over lines: each direction's volume is permuted to a time-major matrix
(L, lines, C); the input transform of all steps is one matrix product and every step of
the recurrence is one batched product over all lines of that direction.
"""
import numpy as np

DIRECTIONS = ("T+", "T-", "W+", "W-", "H+", "H-")
# Volume axis swept by each direction (x is (N, C, T, H, W)) and whether it runs backward.
_AXIS = {"T": 2, "H": 3, "W": 4}
BLOBS_PER_DIRECTION = 3

# Default fillers (not in the paper; the common Caffe LSTM choice): weights uniform in
# [-0.08, 0.08], biases 0.
DEFAULT_WEIGHT_FILLER = {"type": "uniform", "min": -0.08, "max": 0.08}
DEFAULT_BIAS_FILLER = {"type": "constant", "value": 0.0}


def direction_axis(direction):
    """(volume axis, reversed) swept by one of DIRECTIONS."""
    if direction not in DIRECTIONS:
        raise ValueError("unknown sweep direction %r; expected one of %s" % (direction, DIRECTIONS))
    return _AXIS[direction[0]], direction[1] == "-"


def _line_order(axis):
    # (swept axis, N, the other two spatial axes in T, H, W order, C)
    others = [a for a in (2, 3, 4) if a != axis]
    return (axis, 0, others[0], others[1], 1)


def to_lines(x, direction):
    """Volume (N, C, T, H, W) -> time-major lines (L, N * other two axes, C) of one direction.

    Step s of a backward direction is position L-1-s along its axis. Lines are ordered
    (n, then the two other spatial axes in T, H, W order), as in the native layer.
    """
    axis, rev = direction_axis(direction)
    lines = x.transpose(_line_order(axis))
    L, C = lines.shape[0], lines.shape[-1]
    lines = lines.reshape(L, -1, C)
    return lines[::-1] if rev else lines


def from_lines(y, direction, volume_shape):
    """Inverse of to_lines: (L, lines, K) -> (N, K, T, H, W) for a volume of volume_shape."""
    axis, rev = direction_axis(direction)
    if rev:
        y = y[::-1]
    order = _line_order(axis)
    shape5 = [volume_shape[a] for a in order]
    shape5[-1] = y.shape[-1]
    return y.reshape(shape5).transpose(np.argsort(order))


def _sigmoid(z):
    return 0.5 * (np.tanh(0.5 * z) + 1.0)  # overflow-free logistic


def lstm_forward(X, W_xc, b_c, W_hc):
    """Caffe's LSTM over time-major lines X (L, n, C) with h_0 = c_0 = 0.

    Returns the hidden states H (L, n, Hd) and a cache for lstm_backward.
    """
    L, n, C = X.shape
    Hd = W_hc.shape[1]
    _check_lstm_shapes(C, Hd, W_xc, b_c, W_hc)
    # All steps' input transforms in one product; the recurrence adds W_hc h_{s-1} per step.
    acts = (X.reshape(L * n, C) @ W_xc.T + b_c).reshape(L, n, 4 * Hd)
    Cs = np.empty((L, n, Hd), X.dtype)
    Hs = np.empty((L, n, Hd), X.dtype)
    for s in range(L):
        a = acts[s]
        if s > 0:
            a += Hs[s - 1] @ W_hc.T
        a[:, :3 * Hd] = _sigmoid(a[:, :3 * Hd])
        a[:, 3 * Hd:] = np.tanh(a[:, 3 * Hd:])
        i, f, o, g = (a[:, k * Hd:(k + 1) * Hd] for k in range(4))
        Cs[s] = i * g if s == 0 else f * Cs[s - 1] + i * g
        Hs[s] = o * np.tanh(Cs[s])
    return Hs, (X, W_xc, W_hc, acts, Cs, Hs)


def lstm_backward(dH, cache):
    """Backward of lstm_forward: dH (L, n, Hd) -> dX, dW_xc, db_c, dW_hc."""
    X, W_xc, W_hc, acts, Cs, Hs = cache
    L, n, C = X.shape
    Hd = W_hc.shape[1]
    dG = np.empty_like(acts)  # gradient w.r.t. the gate pre-activations
    dh_next = np.zeros((n, Hd), X.dtype)
    dc_next = np.zeros((n, Hd), X.dtype)
    for s in range(L - 1, -1, -1):
        i, f, o, g = (acts[s][:, k * Hd:(k + 1) * Hd] for k in range(4))
        dh = dH[s] + dh_next
        tc = np.tanh(Cs[s])
        dc = dc_next + dh * o * (1 - tc * tc)
        c_prev = Cs[s - 1] if s > 0 else np.zeros_like(tc)
        d = dG[s]
        d[:, 0 * Hd:1 * Hd] = dc * g * i * (1 - i)
        d[:, 1 * Hd:2 * Hd] = dc * c_prev * f * (1 - f)
        d[:, 2 * Hd:3 * Hd] = dh * tc * o * (1 - o)
        d[:, 3 * Hd:4 * Hd] = dc * i * (1 - g * g)
        dc_next = dc * f
        dh_next = d @ W_hc
    dG2 = dG.reshape(L * n, 4 * Hd)
    dX = (dG2 @ W_xc).reshape(L, n, C)
    dW_xc = dG2.T @ X.reshape(L * n, C)
    db_c = dG2.sum(axis=0)
    dW_hc = dG[1:].reshape(-1, 4 * Hd).T @ Hs[:-1].reshape(-1, Hd)
    return dX, dW_xc, db_c, dW_hc


def _check_lstm_shapes(C, Hd, W_xc, b_c, W_hc):
    want = {"W_xc": (4 * Hd, C), "b_c": (4 * Hd,), "W_hc": (4 * Hd, Hd)}
    got = {"W_xc": W_xc.shape, "b_c": b_c.shape, "W_hc": W_hc.shape}
    for k in want:
        if tuple(got[k]) != want[k]:
            raise ValueError("spatial LSTM: %s has shape %s, expected %s (Hd=%d, C=%d)"
                             % (k, tuple(got[k]), want[k], Hd, C))


def _split_params(params):
    if len(params) != BLOBS_PER_DIRECTION * len(DIRECTIONS):
        raise ValueError("spatial LSTM needs 18 parameter arrays [W_xc, b_c, W_hc] x 6 directions, "
                         "got %d" % len(params))
    return [params[3 * k:3 * k + 3] for k in range(len(DIRECTIONS))]


def sweep_forward(x, params):
    """Six-direction sweep. x (N, C, T, H, W), params the 18 arrays -> top (N, 6Hd, T, H, W), cache."""
    if x.ndim != 5:
        raise ValueError("spatial LSTM bottom must be (N, C, T, H, W), got shape %s" % (x.shape,))
    per_dir = _split_params(params)
    Hd = per_dir[0][2].shape[1]
    N, C, T, H, W = x.shape
    top = np.empty((N, 6 * Hd, T, H, W), x.dtype)
    caches = []
    for k, (direction, (W_xc, b_c, W_hc)) in enumerate(zip(DIRECTIONS, per_dir)):
        Hs, cache = lstm_forward(np.ascontiguousarray(to_lines(x, direction)), W_xc, b_c, W_hc)
        top[:, k * Hd:(k + 1) * Hd] = from_lines(Hs, direction, x.shape)
        caches.append(cache)
    return top, (x.shape, Hd, caches)


def sweep_backward(dtop, cache):
    """Backward of sweep_forward: dtop (N, 6Hd, T, H, W) -> dx, list of 18 parameter gradients."""
    shape, Hd, caches = cache
    dx = np.zeros(shape, dtop.dtype)
    grads = []
    for k, (direction, c) in enumerate(zip(DIRECTIONS, caches)):
        dH = np.ascontiguousarray(to_lines(dtop[:, k * Hd:(k + 1) * Hd], direction))
        dX, dW_xc, db_c, dW_hc = lstm_backward(dH, c)
        dx += from_lines(dX, direction, shape)
        grads += [dW_xc, db_c, dW_hc]
    return dx, grads


def fill(shape, filler, rng, dtype=np.float32):
    """An array drawn like Caffe's fillers: {"type": "uniform"|"gaussian"|"constant", ...}."""
    kind = filler.get("type", "constant")
    if kind == "uniform":
        a = rng.uniform(filler.get("min", 0.0), filler.get("max", 1.0), shape)
    elif kind == "gaussian":
        a = rng.normal(filler.get("mean", 0.0), filler.get("std", 1.0), shape)
    elif kind == "constant":
        a = np.full(shape, filler.get("value", 0.0))
    else:
        raise ValueError("spatial LSTM: unsupported filler type %r (uniform, gaussian, constant)"
                         % kind)
    return a.astype(dtype)


def param_shapes(C, Hd):
    """Shapes of the 18 parameter arrays, direction-major [W_xc, b_c, W_hc]."""
    return [(4 * Hd, C), (4 * Hd,), (4 * Hd, Hd)] * len(DIRECTIONS)


def init_params(C, Hd, rng=None, weight_filler=None, bias_filler=None, dtype=np.float32):
    """The 18 parameter arrays filled with the defaults (uniform +-0.08 weights, zero biases)."""
    rng = np.random.default_rng(rng)
    wf = weight_filler or DEFAULT_WEIGHT_FILLER
    bf = bias_filler or DEFAULT_BIAS_FILLER
    return [fill(s, bf if len(s) == 1 else wf, rng, dtype) for s in param_shapes(C, Hd)]
