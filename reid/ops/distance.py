"""The distance d of the whole model: Euclidean distance of L2-normalised features F.

One d serves the triplet loss (paper 3.2, reid.ops.triplet), the in-batch negative mining
(paper 4.2, reid.ops.mining) and the test-time similarity of paper eq. 2,
S = 1 / (1 + d) + lambda * M (reid.evaluation.rerank), so that the margin is learnt in the
units the ranking uses (docs/DESIGN.md §1.3):

    f^ = f / max(||f||, eps),        d(x, y) = ||x^ - y^||        (0 <= d <= 2)
"""
import numpy as np

EPS = 1e-12


def l2_normalize(F, eps=EPS):
    """Rows of F (B, D) scaled to unit length (zero rows stay zero); returns (F^, norms (B, 1)).

    Keeps F's floating dtype (the triplet layer runs in float32)."""
    F = np.asarray(F)
    if not np.issubdtype(F.dtype, np.floating):
        F = F.astype(np.float64)
    norms = np.maximum(np.sqrt((F * F).sum(axis=1, keepdims=True)), eps)
    return F / norms, norms


def euclidean_distance(F, G=None, normalise=True):
    """d(F(xi), F(xj)) for all pairs: F (n, D), G (m, D) (default F) -> (n, m) float64.

    With ``normalise`` (the paper's "normalized Euclidean distance") rows are L2-normalised
    first. Uses |a|^2 + |b|^2 - 2 a.b, clipped at 0 before the square root.
    """
    F = np.asarray(F, dtype=np.float64)
    G = F if G is None else np.asarray(G, dtype=np.float64)
    for name, x in (("F", F), ("G", G)):
        if x.ndim != 2:
            raise ValueError("distance: features %s must be 2-D (n, D), got shape %s"
                             % (name, x.shape))
    if F.shape[1] != G.shape[1]:
        raise ValueError("distance: query features have D=%d, gallery features D=%d"
                         % (F.shape[1], G.shape[1]))
    same = G is F
    if normalise:
        F = l2_normalize(F)[0]
        G = F if same else l2_normalize(G)[0]
    sq = (F * F).sum(1)[:, None] + (G * G).sum(1)[None, :] - 2.0 * (F @ G.T)
    return np.sqrt(np.maximum(sq, 0.0))
