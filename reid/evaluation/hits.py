"""Non-junk ranks of each query's good gallery items: all that CMC and AP need (docs/DESIGN.md §5).

A protocol (reid.evaluation.protocols) ranks the gallery of a query by distance, ascending,
ties broken by gallery column index (MATLAB's stable ``sort``); junk items are removed from
the ranking; CMC and AP then depend only on r_1 < r_2 < ... < r_n, the 1-based non-junk
ranks of the n good items.  Two ways to get them, equal to the last bit:

``by_ranks`` (default for distance matrices; no sort of the row)
    The candidates of a query are the gallery items of its person (good or same-camera
    junk; MARS: 15 on average).  Sorted by (distance, column) they cut the row into
    buckets; b(j) = the number of candidates at or before item j in that order, counted
    with one vectorised comparison per candidate (ties fixed up afterwards).  Then

        r(candidate k) = 1 + #{non-junk j : b(j) <= k}          (k = 0, 1, ... sorted)

    and the non-junk count is all items minus the junk ones (the excluded columns, pid -1
    or the queries, gathered from b; the same-camera candidates).  One pass of b serves
    every protocol that shares the candidates (both MARS protocols).
``by_sort`` (the reference)
    The full stable argsort of every row, good/junk codes gathered in ranked order.
"""
import numpy as np

# ---------------------------------------------------------------------------- shared helpers


def row_take(a, order):
    """``np.take_along_axis(a, order, 1)`` for 2-D arrays via a flat ``np.take``
    (2.5-4x faster at MARS width)."""
    a = np.ascontiguousarray(a)
    flat = order + (np.arange(order.shape[0], dtype=order.dtype) * a.shape[1])[:, None]
    return np.take(a.reshape(-1), flat)


def stable_order_rows(dist):
    """Stable ascending argsort of each row (ties -> lower column first).

    Quicksort is ~2.5x faster than NumPy's stable sort for floats; rows that contain equal
    values are re-sorted stably, so the result equals ``argsort(kind='stable')``.
    """
    order = np.argsort(dist, axis=1, kind="quicksort")
    srt = row_take(dist, order)
    tied = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    if tied.size:
        order[tied] = np.argsort(dist[tied], axis=1, kind="stable")
    return order


def summarise_hits(g_row, r, n_rows, ap_rule):
    """(first, ap, n_good) per query from its hits: ``g_row`` the query row of each hit,
    ``r`` its 1-based non-junk rank, hits of a row consecutive and in rank order.

    ap_rule "kit": compute_AP.m's trapezoid, sum_k (p(r_k - 1) + k / r_k) / 2 / n_good;
    "noninterp": mean over the hits of the precision k / r_k.  A row without hits: first
    = inf, AP = NaN (the protocol decides what that means).
    """
    from .protocols import EvaluationInputError
    r = np.asarray(r, dtype=np.float64)
    n_good = np.bincount(g_row, minlength=n_rows)
    starts = np.cumsum(n_good) - n_good
    k = (np.arange(g_row.size) - starts[g_row] + 1).astype(np.float64)  # hit number
    first = np.full(n_rows, np.inf)
    first[g_row[k == 1]] = r[k == 1]
    if ap_rule == "kit":
        prev = np.where(r > 1, (k - 1) / np.maximum(r - 1, 1), 1.0)
        contrib = (prev + k / r) / 2.0
    elif ap_rule == "noninterp":
        contrib = k / r
    else:
        raise EvaluationInputError(f"unknown ap_rule {ap_rule!r}")
    sums = np.bincount(g_row, weights=contrib, minlength=n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(n_good > 0, sums / np.maximum(n_good, 1), np.nan)
    return first, ap, n_good


# ---------------------------------------------------------------------------- full sort
def by_sort(order, q_pid, q_cam, g_pid, g_cam, g_excluded, ap_rule):
    """Hits of the query rows from their full ranking ``order`` (n_rows, n_gallery).

    junk = ``g_excluded`` | (same pid & same camera); good = same pid & other camera & not
    junk (e.g. another query of the person, outside the common variant's gallery).
    """
    n_rows, n_gal = order.shape
    same = g_pid[None, :] == q_pid[:, None]
    same_cam = g_cam[None, :] == q_cam[:, None]
    junk = (same & same_cam) | g_excluded[None, :]
    good = same & ~junk                  # excluded columns are never good
    code = good.view(np.int8) + (junk.view(np.int8) << 1)        # 1 good, 2 junk, 0 other
    code = row_take(code, order).reshape(-1)                       # in ranked order, flat
    marked = np.flatnonzero(code)                                  # row-major => rank order
    kind = code[marked]
    g_key, j_key = marked[kind == 1], marked[kind == 2]            # flat keys row*n + col
    g_row, g_col = np.divmod(g_key, n_gal)
    # junk ranked before each hit in its row
    junk_before = np.searchsorted(j_key, g_key) - np.searchsorted(j_key, g_row * n_gal)
    return summarise_hits(g_row, g_col - junk_before + 1, n_rows, ap_rule)


# ---------------------------------------------------------------------------- by ranks
class Candidates:
    """Gallery columns of every person, for the candidates of a query (its pid's items)."""

    def __init__(self, g_pid):
        self.order = np.argsort(g_pid, kind="stable")       # columns grouped by pid, ascending
        self.pids, self.starts, self.counts = np.unique(g_pid[self.order], return_index=True,
                                                        return_counts=True)

    def count(self, q_pid):
        """Number of candidates of each query (0 for a pid absent from the gallery)."""
        pos = np.clip(np.searchsorted(self.pids, q_pid), 0, max(self.pids.size - 1, 0))
        found = self.pids.size > 0
        hit = (self.pids[pos] == q_pid) if found else np.zeros(q_pid.shape, bool)
        return np.where(hit, self.counts[pos] if found else 0, 0), pos

    def columns(self, q_pid):
        """(cols (R, K) int64, valid (R, K) bool): each row's candidate columns, ascending,
        padded to the longest row K (padding: column 0, valid False)."""
        n, pos = self.count(q_pid)
        width = max(int(n.max()) if n.size else 0, 1)
        slot = np.arange(width)
        valid = slot[None, :] < n[:, None]
        at = np.where(valid, self.starts[pos][:, None] + slot[None, :], 0)
        return np.where(valid, self.order[at], 0).astype(np.int64), valid


def _sorted_candidates(d, cols, valid):
    """Candidates of each row sorted by (distance, column); padding last, with value NaN
    (never below, above or equal to anything: the rows hold no NaN)."""
    n_gal = d.shape[1]
    vals = np.where(valid, row_take(d, cols), np.nan)
    idx = np.lexsort((np.where(valid, cols, n_gal), vals), axis=1)
    return row_take(vals, idx), row_take(cols, idx), valid.sum(1)


def _buckets_below(d, vals):
    """#{candidates c : d_c < d_j} for every item j of every row (uint8/uint16)."""
    b = np.zeros(d.shape, dtype=np.uint8 if vals.shape[1] < 255 else np.uint16)
    below = np.empty(d.shape, dtype=bool)
    add = below.view(np.uint8) if b.dtype == np.uint8 else below
    for c in range(vals.shape[1]):      # one vectorised comparison per candidate
        np.less(vals[:, c:c + 1], d, out=below)
        np.add(b, add, out=b)
    return b


def _fix_ties(b, d, padded, cols, n):
    """Make b(j) = #{candidates c : (d_c, c) <= (d_j, j)} for one row, in place.

    padded: the row's sorted candidate values and one more NaN (b(j) may point past the
    last).  An item tied in value with the candidate right after its bucket (the candidates
    among themselves always are) is at or after those of that value with column <= j."""
    tied = np.flatnonzero(padded.take(b) == d)
    if tied.size:
        extra = ((padded[None, :n] == d[tied, None]) & (cols[None, :n] <= tied[:, None])).sum(1)
        b[tied] += extra.astype(b.dtype)


def _before(b, width):
    """#{j : b(j) <= k} for k < width: the items ranked before candidate k."""
    return np.cumsum(np.bincount(b, minlength=width + 1)[:width])


def _before_rows(b, width):
    """:func:`_before` of every row of b (R, m) at once (for the small excluded subsets)."""
    R = b.shape[0]
    keys = b.astype(np.int64) + (np.arange(R, dtype=np.int64) * (width + 1))[:, None]
    cnt = np.bincount(keys.reshape(-1), minlength=R * (width + 1)).reshape(R, width + 1)
    return np.cumsum(cnt[:, :width], axis=1)


def by_ranks(d, q_pid, q_cam, candidates, g_cam, specs):
    """Hits of the query rows of the distance rows ``d`` (R, n_gallery), without sorting.

    candidates: :class:`Candidates` of the gallery pids; specs: [(g_excluded (n_gallery,)
    bool, ap_rule)], one per protocol, all sharing one bucket pass.  Returns
    [(first, ap, n_good)] per spec, as :func:`by_sort` would for each.
    """
    d = np.ascontiguousarray(d)
    R = d.shape[0]
    vals, cols, n_valid = _sorted_candidates(d, *candidates.columns(q_pid))
    width = vals.shape[1]
    b = _buckets_below(d, vals)
    before_all = np.empty((R, width), np.int64)
    padded = np.concatenate([vals, np.full((R, 1), np.nan)], axis=1)
    for r in range(R):                  # per row: the tables are small, the gathers cheap
        _fix_ties(b[r], d[r], padded[r], cols[r], n_valid[r])
        before_all[r] = _before(b[r], width)
    valid = np.arange(width)[None, :] < n_valid[:, None]
    same_cam = (g_cam[cols] == q_cam[:, None]) & valid
    out = []
    for g_excluded, ap_rule in specs:
        excluded = g_excluded[cols] & valid
        junk_cand = same_cam & ~excluded             # the excluded: in _before_rows below
        before_junk = (_before_rows(b[:, np.flatnonzero(g_excluded)], width)
                       + np.cumsum(junk_cand, axis=1) - junk_cand)
        good = valid & ~same_cam & ~excluded
        g_row, g_k = np.nonzero(good)                # row-major: each row's hits in rank order
        r = 1 + before_all[g_row, g_k] - before_junk[g_row, g_k]
        out.append(summarise_hits(g_row, r, R, ap_rule))
    return out
