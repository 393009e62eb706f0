"""Negative mining for the joint triplet and SRM losses (paper 4.2, ref. [24] FaceNet; docs/DESIGN.md §1.3).

Within a batch, each anchor's negative for both the triplet loss and the SRM's
(anchor, negative) pair is chosen among the batch's sequences of other identities (the
"pool"), by the Euclidean distance of the L2-normalised features F
(reid.ops.distance, the same d as the triplet loss and paper eq. 2):

- ``hard``: the nearest other-identity sequence (the paper's hard negative mining, the default);
- ``semihard``: FaceNet's semi-hard negative, the nearest other-identity sequence that is
  farther from the anchor than its positive; anchors with none fall back to the hardest;
- ``random``: a uniformly drawn other-identity sequence (seedable).

The choice is not differentiable; callers pass no gradient through it.
"""
import numpy as np

from reid.ops.distance import euclidean_distance

MODES = ("hard", "semihard", "random")


def mine_negatives(features, labels, anchors, positives=None, mode="hard", rng=None):
    """Index into the pool of each anchor's negative.

    features  (n, D) the pool's features F (any scale; they are L2-normalised here)
    labels    (n,) identity of every pool entry
    anchors   (B,) pool indices of the anchors
    positives (B,) pool indices of the anchors' positives (needed by ``semihard``)
    mode      one of MODES
    rng       numpy Generator or seed (``random`` mode)
    Returns (B,) int64 pool indices, each of an identity other than its anchor's.
    """
    features = np.asarray(features)
    labels = np.asarray(labels).reshape(-1)
    anchors = np.asarray(anchors, dtype=np.int64).reshape(-1)
    n = len(labels)
    if mode not in MODES:
        raise ValueError("mining: unknown mode %r; expected one of %s" % (mode, MODES))
    if features.ndim != 2 or features.shape[0] != n:
        raise ValueError("mining: features must be (n, D) with n = %d labels, got shape %s"
                         % (n, features.shape))
    _check_indices("anchor", anchors, n)
    allowed = labels[None, :] != labels[anchors][:, None]  # (B, n) other identities
    lonely = np.flatnonzero(~allowed.any(axis=1))
    if len(lonely):
        k = lonely[0]
        raise ValueError("mining: anchor %d (pool index %d, label %r) has no sequence of another "
                         "identity in the batch" % (k, anchors[k], labels[anchors[k]]))
    if mode == "random":
        rng = np.random.default_rng(rng)
        return np.array([rng.choice(np.flatnonzero(row)) for row in allowed], dtype=np.int64)
    d = euclidean_distance(features[anchors], features)  # (B, n)
    d_neg = np.where(allowed, d, np.inf)
    hardest = np.argmin(d_neg, axis=1)
    if mode == "hard":
        return hardest.astype(np.int64)
    if positives is None:
        raise ValueError("mining: mode 'semihard' needs the positives' pool indices")
    positives = np.asarray(positives, dtype=np.int64).reshape(-1)
    if positives.shape != anchors.shape:
        raise ValueError("mining: %d positives for %d anchors" % (len(positives), len(anchors)))
    _check_indices("positive", positives, n)
    d_ap = d[np.arange(len(anchors)), positives]
    semi = np.where(d_neg > d_ap[:, None], d_neg, np.inf)
    has_semi = np.isfinite(semi).any(axis=1)
    return np.where(has_semi, np.argmin(semi, axis=1), hardest).astype(np.int64)


def _check_indices(name, idx, n):
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        raise ValueError("mining: %s index %d is outside the pool of %d" % (name, idx[bad][0], n))
