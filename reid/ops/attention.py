"""Attention-weighted averaging over time, the core of the TAM (paper 3.2, eq. 3).

    w_t  = softmax_t(s_t)
    xbar = sum_t w_t x_t

NumPy reference of the native AttentionAverage layer: same shapes, same semantics.
Features x have T on `axis` (outer..., T, inner...); scores s have shape (outer..., T).
"""
import numpy as np


def _split(x, s, axis):
    axis = axis % x.ndim
    if s.shape != x.shape[:axis + 1]:
        raise ValueError("scores shape %s does not match the leading axes %s of features %s"
                         % (s.shape, x.shape[:axis + 1], x.shape))
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return axis, x.reshape(outer, x.shape[axis], -1), s.reshape(outer, x.shape[axis])


def softmax(s):
    """Softmax over the last axis; subtracting the max keeps exp() finite."""
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention_average_forward(x, s, axis=1):
    """Return (xbar, w): the weighted average (x's shape without `axis`) and w (s's shape)."""
    axis, x3, s2 = _split(x, s, axis)
    w = softmax(s2)
    y = np.einsum("ot,oti->oi", w, x3)
    return y.reshape(x.shape[:axis] + x.shape[axis + 1:]), w.reshape(s.shape)


def attention_average_backward(x, w, dy, dw=None, axis=1):
    """Gradients (dx, ds) given dL/dxbar = dy and, optionally, dL/dw = dw from a weights top."""
    axis, x3, w2 = _split(x, w, axis)
    dy2 = dy.reshape(x3.shape[0], x3.shape[2])
    dx = w2[:, :, None] * dy2[:, None, :]
    g = np.einsum("oti,oi->ot", x3, dy2)
    if dw is not None:
        g = g + dw.reshape(g.shape)
    ds = w2 * (g - (w2 * g).sum(axis=1, keepdims=True))
    return dx.reshape(x.shape), ds.reshape(w.shape)
