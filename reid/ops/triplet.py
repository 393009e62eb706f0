"""Triplet loss on the TAM features F (paper 3.2, ref. [24] FaceNet; docs/DESIGN.md §1.3), in NumPy.

Each feature is L2-normalised, f^ = f / ||f||, and compared by the plain Euclidean distance
d(x, y) = ||x^ - y^|| of reid.ops.distance (not its square: the same d as the test-time
similarity of paper eq. 2, so the margin is in the units the ranking uses). For B triplets (a_k, p_k, n_k):

    l_k  = d(a_k, p_k) - d(a_k, n_k) + margin
    loss = (1 / |V|) * sum_{k in V} l_k,     V = {k : l_k > 0}   (loss = 0 when V is empty)

i.e. averaged over the triplets that violate the margin (default 0.3), not over all B: the
easy triplets would otherwise dilute the gradient as training goes on. |V| is treated as a
constant in the gradient (it is piecewise constant). Where d = 0 the subgradient 0 is used.
"""
import numpy as np

from reid.ops.distance import EPS as _EPS, l2_normalize

DEFAULT_MARGIN = 0.3


def _l2_normalize_backward(dFhat, Fhat, norms):
    # d(f/||f||)/df = (I - f^ f^T) / ||f||
    return (dFhat - Fhat * (dFhat * Fhat).sum(axis=1, keepdims=True)) / norms


def _check(a, p, n):
    for name, x in (("anchor", a), ("positive", p), ("negative", n)):
        if x.ndim != 2:
            raise ValueError("triplet loss: %s features must be (B, D), got shape %s" % (name, x.shape))
    if not (a.shape == p.shape == n.shape):
        raise ValueError("triplet loss: anchor, positive and negative shapes differ: %s %s %s"
                         % (a.shape, p.shape, n.shape))


def triplet_forward(a, p, n, margin=DEFAULT_MARGIN):
    """Loss of B triplets of features (B, D) each. Returns (loss, fraction violating, cache)."""
    _check(a, p, n)
    ah, an_ = l2_normalize(a)
    ph, pn = l2_normalize(p)
    nh, nn = l2_normalize(n)
    u, v = ah - ph, ah - nh
    d_ap = np.sqrt((u * u).sum(1))
    d_an = np.sqrt((v * v).sum(1))
    l = d_ap - d_an + margin
    violating = l > 0
    k = int(violating.sum())
    loss = float(l[violating].sum() / k) if k else 0.0
    frac = k / float(len(l)) if len(l) else 0.0
    cache = (ah, an_, ph, pn, nh, nn, u, v, d_ap, d_an, violating, k)
    return loss, frac, cache


def triplet_backward(cache, dloss=1.0):
    """Gradients of dloss * loss w.r.t. the anchor, positive and negative features."""
    ah, an_, ph, pn, nh, nn, u, v, d_ap, d_an, violating, k = cache
    if k == 0:
        z = np.zeros_like(ah)
        return z, z.copy(), z.copy()
    w = violating.astype(ah.dtype)[:, None] * (dloss / k)
    gu = w * u / np.maximum(d_ap, _EPS)[:, None]   # d loss / d (a^ - p^)
    gv = -w * v / np.maximum(d_an, _EPS)[:, None]  # d loss / d (a^ - n^)
    da = _l2_normalize_backward(gu + gv, ah, an_)
    dp = _l2_normalize_backward(-gu, ph, pn)
    dn = _l2_normalize_backward(-gv, nh, nn)
    return da, dp, dn
