"""Test-time similarity and top-K re-scoring (paper eq. 2, section 3.1; docs/DESIGN.md §1.3).

    S(xi, xj) = 1 / (1 + d(F(xi), F(xj))) + lambda * M(xi, xj)          (eq. 2)

d is the Euclidean distance of L2-normalised features F (the "normalized Euclidean
distance" of the paper; reid.ops.distance.euclidean_distance, the same d as the triplet loss
and the mining), M the SRM's same-person probability, lambda = 1 in the paper.
Scoring every query-gallery pair with the SRM is infeasible at MARS scale (1,980 x 12,180),
so :func:`rerank` ranks everything by d, then re-scores the top K of each query with S and
re-orders only those K.  With K = gallery size this is exactly the brute-force ranking by S
(ties broken by gallery column index, like the stable sort of the protocols).

Modes (the ablations of Table 2, docs/DESIGN.md §1.4; reid.nets.config.Variant.mode says which):

* ``"distance"``: d only (variants without an SRM: CNN, CNN+RNN, CNN+TAM);
* ``"joint"``: eq. 2 on the top K (ALL);
* ``"metric"``: M only (variants without F: CNN+DIFF, CNN+SRM).  They have no d of their
  own: pass ``d=None`` to score all pairs (K = gallery size), or another run's d to
  preselect the top K (record that in the run's metadata).

The metric is a callable ``metric_fn(q_idx, g_idx) -> M`` (see :class:`MetricFn`): q_idx
and g_idx are equal-length int arrays of row (query) and column (gallery) indices of d,
M the (len,) probabilities.  It is called in batches of at most ``batch_size`` pairs, in
row-major order (all K pairs of query 0, then of query 1, ...), so consecutive pairs share
their query.  Building it from a Caffe net (pool5 volumes of both tracklets, the SRM
forward pass) is the job of ``reid/evaluation/features.py`` (MetricScorer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from reid.ops.distance import euclidean_distance  # noqa: F401  (d of eq. 2; re-exported)

from .protocols import EvaluationInputError, rank_order

MODES = ("distance", "joint", "metric")


class MetricFn(Protocol):
    """M for pairs: ``metric_fn(q_idx, g_idx) -> (len(q_idx),)`` values in [0, 1]."""

    def __call__(self, q_idx: np.ndarray, g_idx: np.ndarray) -> np.ndarray: ...


def metric_ranking(metric_fn, n_query, n_gallery, **kw):
    """The ranking of a metric-only variant (CNN+DIFF, CNN+SRM): every gallery item of every
    query scored by M and sorted by it, no preselection (they have no trained d). Costs
    n_query x n_gallery metric evaluations: 1,980 x 12,180 = 24.1 M pairs at MARS size (times
    the chunk pairs per tracklet pair when M is averaged over chunks). ``kw`` go to
    :func:`rerank`."""
    return rerank(None, metric_fn, mode="metric", shape=(n_query, n_gallery), **kw)



def similarity(d, m, lam=1.0):
    """Paper eq. 2: S = 1 / (1 + d) + lambda * M (elementwise)."""
    return 1.0 / (1.0 + np.asarray(d, dtype=np.float64)) + lam * np.asarray(m, dtype=np.float64)


@dataclass
class Ranking:
    """A ranking usable by every protocol (``order`` attribute).

    order: (n_q, n_g) gallery columns best first.  The first ``k`` columns were re-scored
        (``scores``: their S, or M in metric mode, in that order, best first); the rest keep
        the order by d.  k = 0 and scores = None in distance mode.
    """
    order: np.ndarray
    k: int
    mode: str
    lam: float
    scores: Optional[np.ndarray] = None

    def distance_like(self, d=None):
        """A matrix whose stable ascending sort gives ``order`` (for tools that want one).

        Re-scored entries get -S (joint: S > 0, so they sort before every d >= 0) or
        -(1 + M) (metric mode, since M may be 0; merges M values closer than ~1e-16).
        ``d`` is needed unless every column was re-scored.  ``order`` stays authoritative.
        """
        n_q, n_g = self.order.shape
        if self.k == n_g:
            out = np.empty((n_q, n_g))
        elif d is None:
            raise EvaluationInputError("distance_like needs d when k < gallery size")
        else:
            out = np.array(d, dtype=np.float64, copy=True)
        if self.k:
            vals = -self.scores if self.mode == "joint" else -(1.0 + self.scores)
            np.put_along_axis(out, self.order[:, :self.k], vals, axis=1)
        return out


def _metric_batches(metric_fn, q_idx, g_idx, batch_size, progress):
    """M for all pairs, ``batch_size`` pairs per call, with shape/range checks."""
    from tqdm import tqdm

    out = np.empty(q_idx.size, dtype=np.float64)
    starts = range(0, q_idx.size, batch_size)
    for s in tqdm(starts, desc="metric (SRM) batches", disable=not progress,
                  total=len(starts)):
        e = min(s + batch_size, q_idx.size)
        m = np.asarray(metric_fn(q_idx[s:e], g_idx[s:e]), dtype=np.float64).reshape(-1)
        if m.size != e - s:
            raise EvaluationInputError(f"metric_fn returned {m.size} values for {e - s} pairs")
        if not np.all(np.isfinite(m)) or m.min() < 0.0 or m.max() > 1.0:
            raise EvaluationInputError("metric_fn must return probabilities in [0, 1] "
                                       f"(got min {m.min()}, max {m.max()})")
        out[s:e] = m
    return out


def order_index(cols, score):
    """Per row, the positions sorted by score descending, ties by gallery column ascending."""
    return np.lexsort((cols, -score), axis=-1)


def order_by_score(cols, score):
    """Sort each row of a block by score descending, ties by gallery column ascending."""
    idx = order_index(cols, score)
    return np.take_along_axis(cols, idx, 1), np.take_along_axis(score, idx, 1)


def rerank(d=None, metric_fn=None, *, k=100, lam=1.0, mode="joint", batch_size=4096,
           shape=None, progress=True, workers=None):
    """Rank by d, re-score the top ``k`` of every query (paper eq. 2, docs/DESIGN.md §1.3).

    d: (n_q, n_g) distances (from :func:`euclidean_distance`); None only in metric mode,
        then ``shape=(n_q, n_g)`` is required and every pair is scored.
    metric_fn: see :class:`MetricFn` (unused in distance mode).
    k: re-scored list length per query, clipped to n_g.
    lam: lambda of eq. 2 (paper: 1).
    Returns a :class:`Ranking`.  Everything is validated before the first metric call.
    """
    if mode not in MODES:
        raise EvaluationInputError(f"mode must be one of {MODES}, got {mode!r}")
    if d is not None:
        d = np.asarray(d, dtype=np.float64)
        if d.ndim != 2:
            raise EvaluationInputError(f"d must be 2-D (n_query, n_gallery), got {d.shape}")
        if not np.all(np.isfinite(d)) or d.min() < 0:
            raise EvaluationInputError("d must be finite and >= 0")
        if shape is not None and tuple(shape) != d.shape:
            raise EvaluationInputError(f"shape {tuple(shape)} != d.shape {d.shape}")
        shape = d.shape
    elif mode != "metric":
        raise EvaluationInputError(f"mode {mode!r} needs the distance matrix d")
    elif shape is None or len(shape) != 2:
        raise EvaluationInputError("metric mode without d needs shape=(n_query, n_gallery)")
    n_q, n_g = (int(s) for s in shape)
    if mode == "distance":
        return Ranking(order=rank_order(d, workers), k=0, mode=mode, lam=float(lam))
    if not callable(metric_fn):
        raise EvaluationInputError(f"mode {mode!r} needs a callable metric_fn(q_idx, g_idx)")
    if int(batch_size) < 1:
        raise EvaluationInputError(f"batch_size must be >= 1, got {batch_size}")
    k = n_g if d is None else int(min(max(int(k), 1), n_g))

    if d is None:
        order = np.tile(np.arange(n_g), (n_q, 1))
    else:
        order = rank_order(d, workers)
    top = order[:, :k]
    q_idx = np.repeat(np.arange(n_q), k)
    m = _metric_batches(metric_fn, q_idx, top.reshape(-1), int(batch_size),
                        progress).reshape(n_q, k)
    score = similarity(np.take_along_axis(d, top, 1), m, lam) if mode == "joint" else m
    new_top, new_score = order_by_score(top, score)
    order[:, :k] = new_top
    return Ranking(order=order, k=k, mode=mode, lam=float(lam), scores=new_score)
