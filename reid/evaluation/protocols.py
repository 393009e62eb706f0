"""Evaluation protocols: the only place they live (docs/DESIGN.md §5, paper section 4.1).

Every function here takes plain NumPy arrays (pids, cameras, query indices) so it depends on
neither Caffe nor the dataset reader.  A "ranking source" is either

* a distance-like matrix ``dist`` of shape (n_query, n_gallery), lower = better; rows are
  ranked by a *stable* ascending sort, so ties are broken by gallery column index exactly
  as MATLAB's ``sort(..., 'ascend')`` does in the MARS evaluation kit; or
* an object with an ``order`` attribute (n_query, n_gallery) of gallery column indices,
  best first, e.g. :class:`reid.evaluation.rerank.Ranking` (paper eq. 2 re-scoring).

Protocols
---------
``mars_official``  (MARS evaluation kit, liangzheng06/MARS-evaluation, utils/evaluation_mars.m
    with the Market-1501 compute_AP.m)
    gallery = the whole test set (queries included); for a query: good = same pid & other
    camera; junk (removed from the ranking) = pid -1 and same pid & same camera (the query
    itself included); pid 0 (the paper's 3,248 distractor tracklets) are ordinary negatives.
    CMC is computed on the ranking with junk removed.  AP follows compute_AP.m: after every
    non-junk item the trapezoid (recall - old_recall) * (old_precision + precision) / 2 is
    added, starting from old_precision = 1; since recall only moves at hits this equals
    ``sum_k (1/n_good) * (p(r_k - 1) + k / r_k) / 2`` with ``p(r - 1) = (k-1)/(r_k-1)``
    (1 when r_k = 1), r_k the non-junk rank of the k-th hit.  CMC and mAP are averaged over
    ALL queries.  A query with no good match: the kit leaves its CMC row at 0 (a miss) and
    its AP at 0/0 = NaN, which would make the kit's mAP NaN; here it counts as a miss with
    AP = 0, is kept in the denominator of both, and is counted in ``num_no_match`` (the real
    MARS query set has none: every one of the 1,980 queries has a good match).
``mars_common``  (the variant common in re-id toolkits; labelled as such)
    gallery = test set minus the queries, pid -1 dropped; same pid & same camera removed;
    queries with no valid match skipped (not in the denominator); non-interpolated AP =
    mean over the hits of the precision at each hit (sklearn-style average precision).
``two_camera``  (iLIDS-VID, PRID2011; paper section 4.1)
    probe = cam1 / cam_a, gallery = cam2 / cam_b, over the test persons of one split; one
    ground truth per probe; CMC at ranks 1, 5, 10, 20 and AP (= 1 / rank of the match),
    averaged over the 10 splits with their standard deviation.

Speed: a protocol needs only the non-junk ranks of each query's good items, so distance
matrices are not sorted: reid.evaluation.hits.by_ranks places every gallery item among the
query's own candidates (the items of its person) with one vectorised comparison per
candidate, and both MARS protocols share that pass (``method="ranks"``, the default).  The
full stable argsort of every row (``method="sort"``, hits.by_sort) is kept as the reference;
both give identical results, ties included.  Row chunks run on a thread pool (NumPy's
comparisons and sorts release the GIL); no Python loop runs over gallery items.
``kit_reference_ap_cmc`` is a literal, slow, loop-by-loop transcription of compute_AP.m kept
only to cross-check the vectorised code in tests and benchmarks.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import hits

MARS_OFFICIAL = "mars_official"
MARS_COMMON = "mars_common"
TWO_CAMERA_SPLITS = "two_camera_splits"
TWO_CAMERA = "two_camera"

PROTOCOL_LABELS = {
    MARS_OFFICIAL: "MARS official kit (gallery = all test tracklets, junk ignored, "
                   "trapezoid AP, all queries)",
    MARS_COMMON: "MARS common variant (gallery = test minus queries, pid -1 dropped, "
                 "no-match queries skipped, non-interpolated AP)",
    TWO_CAMERA: "two-camera single split (probe cam 1, gallery cam 2)",
    TWO_CAMERA_SPLITS: "two-camera, mean and std over the splits (probe cam 1, gallery cam 2)",
}

DEFAULT_RANKS = (1, 5, 10, 20)
DEFAULT_MAX_RANK = 50          # length of the stored CMC curve (the kit plots ranks 1..50)
_CHUNK_ROWS = 128              # rows per work item: keeps temporaries ~20 MB at MARS width


# ----------------------------------------------------------------------------- validation
class EvaluationInputError(ValueError):
    """Bad input to an evaluation protocol (raised before any long computation)."""


def _as_1d(name, a, dtype=None):
    a = np.asarray(a, dtype=dtype)
    if a.ndim != 1:
        raise EvaluationInputError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _check_source(source, n_query, n_gallery, what):
    """Validate a ranking source's shape (and NaNs for matrices) before any sorting."""
    if hasattr(source, "order"):
        mat = np.asarray(source.order)
        kind = "ranking.order"
    else:
        mat = np.asarray(source)
        kind = "distance matrix"
    if mat.ndim != 2 or mat.shape != (n_query, n_gallery):
        raise EvaluationInputError(
            f"{what}: {kind} has shape {mat.shape}, expected (n_query, n_gallery) = "
            f"({n_query}, {n_gallery})")
    if kind == "distance matrix":
        if not np.issubdtype(mat.dtype, np.number):
            raise EvaluationInputError(f"{what}: distance matrix must be numeric, got {mat.dtype}")
        # min() propagates NaN: one pass, no (n_query, n_gallery) temporary
        if np.issubdtype(mat.dtype, np.floating) and mat.size and np.isnan(mat.min()):
            raise EvaluationInputError(f"{what}: distance matrix contains NaN")
    elif not np.issubdtype(mat.dtype, np.integer):
        raise EvaluationInputError(f"{what}: ranking.order must hold integer column indices")
    elif mat.size and (mat.min() < 0 or mat.max() >= n_gallery):
        raise EvaluationInputError(f"{what}: ranking.order has column indices outside "
                                   f"[0, {n_gallery})")
    return mat, kind


def _check_query_idx(query_idx, n_test, what):
    q = _as_1d("query_idx", query_idx)
    if not np.issubdtype(q.dtype, np.integer):
        raise EvaluationInputError(f"{what}: query_idx must be integer (0-based) indices")
    if q.size == 0:
        raise EvaluationInputError(f"{what}: query_idx is empty")
    if q.min() < 0 or q.max() >= n_test:
        raise EvaluationInputError(
            f"{what}: query_idx out of range [0, {n_test}) (min {q.min()}, max {q.max()}); "
            "they are 0-based rows of the test table (the kit's query_IDX minus 1)")
    if np.unique(q).size != q.size:
        raise EvaluationInputError(f"{what}: query_idx has duplicates")
    return q.astype(np.int64)


# ----------------------------------------------------------------------------- ranking
def _workers(workers):
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    return max(1, int(workers))


def rank_order(dist, workers=None):
    """Gallery column indices of each row of ``dist`` best (smallest) first, ties by column.

    Equal to ``np.argsort(dist, axis=1, kind='stable')``, computed in row chunks on
    ``workers`` threads.
    """
    dist = np.asarray(dist)
    if dist.ndim != 2:
        raise EvaluationInputError(f"rank_order: dist must be 2-D, got shape {dist.shape}")
    chunks = [slice(i, min(i + _CHUNK_ROWS, dist.shape[0]))
              for i in range(0, dist.shape[0], _CHUNK_ROWS)]
    out = np.empty(dist.shape, dtype=np.intp)

    def work(sl):
        out[sl] = hits.stable_order_rows(dist[sl])

    _run_chunks(work, chunks, workers)
    return out


def _run_chunks(fn, chunks, workers):
    workers = _workers(workers)
    if workers == 1 or len(chunks) == 1:
        return [fn(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, chunks))


# ----------------------------------------------------------------------------- core
METHODS = ("ranks", "sort")


def _evaluate_core(source, q_pid, q_cam, g_pid, g_cam, g_excluded, ap_rule, workers,
                   method="ranks"):
    """(first, ap, n_good) per query; ``g_excluded``/``ap_rule`` may be lists (one protocol
    each, sharing the work), then a list of such triples is returned.

    method "ranks": hits.by_ranks (no sort of the rows); "sort": hits.by_sort on the full
    stable ranking (the reference).  A Ranking source has its order already: by_sort.
    """
    single = not isinstance(ap_rule, (list, tuple))
    specs = list(zip([g_excluded], [ap_rule]) if single else zip(g_excluded, ap_rule))
    if method not in METHODS:
        raise EvaluationInputError(f"method must be one of {METHODS}, got {method!r}")
    n_q = q_pid.size
    if method == "ranks" and not hasattr(source, "order"):
        cand = hits.Candidates(g_pid)
        # rows with similar candidate counts together: one chunk pads to its longest row
        by_count = np.argsort(cand.count(q_pid)[0], kind="stable")
        chunks = [np.sort(by_count[i:i + _CHUNK_ROWS]) for i in range(0, n_q, _CHUNK_ROWS)]
        parts = _run_chunks(lambda rows: hits.by_ranks(
            np.asarray(source[rows]), q_pid[rows], q_cam[rows], cand, g_cam, specs),
            chunks, workers)
    else:
        chunks = [np.arange(i, min(i + _CHUNK_ROWS, n_q)) for i in range(0, n_q, _CHUNK_ROWS)]
        parts = _run_chunks(lambda rows: [hits.by_sort(
            _order_of(source, rows), q_pid[rows], q_cam[rows], g_pid, g_cam, ex, rule)
            for ex, rule in specs], chunks, workers)
    rows = np.concatenate(chunks)
    out = []
    for s in range(len(specs)):
        triple = []
        for f in range(3):
            v = np.empty(n_q, dtype=parts[0][s][f].dtype)
            v[rows] = np.concatenate([p[s][f] for p in parts])
            triple.append(v)
        out.append(tuple(triple))
    return out[0] if single else out


def _order_of(source, rows):
    if hasattr(source, "order"):
        return np.asarray(source.order[rows])
    return hits.stable_order_rows(np.asarray(source[rows]))


def _summarise(first, ap, n_gallery_ranked, ranks, max_rank):
    """CMC curve, rank-k and mAP from first-hit ranks (inf = no hit) and APs."""
    n = first.size
    max_rank = int(min(max_rank, max(n_gallery_ranked, 1)))
    ranks_sorted = np.sort(first)
    cmc = np.searchsorted(ranks_sorted, np.arange(1, max_rank + 1), side="right") / n
    rank_k = {str(k): float(np.count_nonzero(first <= k) / n) for k in ranks}
    return {
        "ranks": rank_k,
        "mAP": float(np.mean(ap)),
        "cmc": cmc.astype(float).tolist(),
    }


def _check_ranks(ranks, max_rank):
    ranks = tuple(int(k) for k in ranks)
    if not ranks or min(ranks) < 1:
        raise EvaluationInputError(f"ranks must be positive integers, got {ranks}")
    if int(max_rank) < 1:
        raise EvaluationInputError(f"max_rank must be >= 1, got {max_rank}")
    return ranks, int(max_rank)


# ----------------------------------------------------------------------------- MARS
def _check_mars(source, pids, cams, query_idx, what):
    pids = _as_1d("pids", pids)
    cams = _as_1d("cams", cams)
    if pids.shape != cams.shape:
        raise EvaluationInputError(
            f"{what}: pids ({pids.size}) and cams ({cams.size}) of the test set differ in length")
    q = _check_query_idx(query_idx, pids.size, what)
    _check_source(source, q.size, pids.size, what)
    if np.any(pids[q] == -1):
        raise EvaluationInputError(f"{what}: a query has pid -1 (junk); queries must be persons")
    return pids, cams, q


def evaluate_mars_official(source, pids, cams, query_idx, **kw):
    """MARS official protocol (evaluation kit semantics; see the module docstring).

    source: (n_query, n_test) distance matrix (lower = better) or a Ranking; columns are
        ALL test tracklets in the order of ``pids``/``cams`` (tracks_test_info rows).
    pids, cams: (n_test,) pid and camera of every test tracklet.
    query_idx: (n_query,) 0-based rows of the test table (kit's query_IDX - 1), the row
        order of ``source``.
    kw: ranks, max_rank, workers, dataset, method (see :func:`evaluate_mars`).
    Returns a result dict (JSON-ready apart from the ``per_query`` arrays).
    """
    return _evaluate_mars(source, pids, cams, query_idx, (MARS_OFFICIAL,),
                          what="evaluate_mars_official", **kw)[0]


def mars_common_gallery(pids, query_idx):
    """Boolean mask over the test set: the common variant's gallery (not a query, pid != -1)."""
    pids = _as_1d("pids", pids)
    mask = pids != -1
    mask[np.asarray(query_idx, dtype=np.int64)] = False
    return mask


def evaluate_mars_common(source, pids, cams, query_idx, **kw):
    """MARS common variant (see the module docstring), labelled ``mars_common``.

    Takes the same (n_query, n_test) source as :func:`evaluate_mars_official` (columns =
    all test tracklets); the query columns and pid -1 columns are dropped here, which is the
    same as removing them from each ranking.
    """
    return _evaluate_mars(source, pids, cams, query_idx, (MARS_COMMON,),
                          what="evaluate_mars_common", **kw)[0]


def evaluate_mars(source, pids, cams, query_idx, *, protocols=(MARS_OFFICIAL, MARS_COMMON),
                  **kw):
    """Both MARS protocols from one (n_query, n_test) source; returns a list of result dicts.

    kw: ranks, max_rank (CMC length), workers (threads), dataset (label), method ("ranks":
    no sort of the rows, one pass shared by the protocols; "sort": the full stable sort of
    every row, the reference; results are identical).
    """
    unknown = [p for p in protocols if p not in (MARS_OFFICIAL, MARS_COMMON)]
    if unknown:
        raise EvaluationInputError(f"unknown MARS protocol(s) {unknown}; know "
                                   f"{sorted((MARS_OFFICIAL, MARS_COMMON))}")
    return _evaluate_mars(source, pids, cams, query_idx, tuple(protocols),
                          what="evaluate_mars", **kw)


def _evaluate_mars(source, pids, cams, query_idx, protocols, *, what, ranks=DEFAULT_RANKS,
                   max_rank=DEFAULT_MAX_RANK, workers=None, dataset="mars", method="ranks"):
    ranks, max_rank = _check_ranks(ranks, max_rank)
    pids, cams, q = _check_mars(source, pids, cams, query_idx, what)
    gallery = mars_common_gallery(pids, q)
    excluded = {MARS_OFFICIAL: pids == -1, MARS_COMMON: ~gallery}
    rule = {MARS_OFFICIAL: "kit", MARS_COMMON: "noninterp"}
    parts = _evaluate_core(source, pids[q], cams[q], pids, cams,
                           [excluded[p] for p in protocols], [rule[p] for p in protocols],
                           workers, method)
    finish = {MARS_OFFICIAL: _official_result, MARS_COMMON: _common_result}
    return [finish[p](part, q, int((~excluded[p]).sum()) if p == MARS_COMMON else pids.size,
                      ranks, max_rank, dataset, what)
            for p, part in zip(protocols, parts)]


def _official_result(part, q, n_gallery, ranks, max_rank, dataset, what):
    first, ap, n_good = part
    no_match = n_good == 0
    if no_match.any():
        warnings.warn(f"{what}: {int(no_match.sum())} queries have no good match; counted as "
                      "misses with AP 0 (the kit would give NaN)", stacklevel=4)
    ap = np.where(no_match, 0.0, ap)
    res = _summarise(first, ap, n_gallery, ranks, max_rank)
    res.update(protocol=MARS_OFFICIAL, protocol_label=PROTOCOL_LABELS[MARS_OFFICIAL],
               dataset=dataset, num_queries=int(q.size), num_evaluated=int(q.size),
               num_no_match=int(no_match.sum()), num_gallery=int(n_gallery),
               per_query={"query_idx": q, "ap": ap, "first_match_rank": first,
                          "num_good": n_good})
    return res


def _common_result(part, q, n_gallery, ranks, max_rank, dataset, what):
    first, ap, n_good = part
    valid = n_good > 0
    if not valid.any():
        raise EvaluationInputError(f"{what}: no query has a valid match in the gallery")
    res = _summarise(first[valid], ap[valid], n_gallery, ranks, max_rank)
    res.update(protocol=MARS_COMMON, protocol_label=PROTOCOL_LABELS[MARS_COMMON],
               dataset=dataset, num_queries=int(q.size), num_evaluated=int(valid.sum()),
               num_no_match=int((~valid).sum()), num_gallery=int(n_gallery),
               per_query={"query_idx": q, "ap": ap, "first_match_rank": first,
                          "num_good": n_good})
    return res


def load_mars_kit_info(info_dir):
    """pids, cams (n_test,) and 0-based query_idx from the kit's ``info/`` tables.

    Reads ``tracks_test_info.mat`` (rows [start, end, pid, cam]) and ``query_IDX.mat``
    (1-based rows of that table), as the kit's test_mars.m does.
    """
    import scipy.io

    info_dir = Path(info_dir)
    tpath, qpath = info_dir / "tracks_test_info.mat", info_dir / "query_IDX.mat"
    for p in (tpath, qpath):
        if not p.is_file():
            raise EvaluationInputError(f"{p}: MARS kit table not found")
    tmat = scipy.io.loadmat(tpath)
    qmat = scipy.io.loadmat(qpath)
    if "track_test_info" not in tmat:
        raise EvaluationInputError(f"{tpath}: no variable 'track_test_info'")
    if "query_IDX" not in qmat:
        raise EvaluationInputError(f"{qpath}: no variable 'query_IDX'")
    table = np.asarray(tmat["track_test_info"])
    if table.ndim != 2 or table.shape[1] != 4:
        raise EvaluationInputError(f"{tpath}: track_test_info has shape {table.shape}, "
                                   "expected (n, 4) rows [start, end, pid, cam]")
    qidx = np.asarray(qmat["query_IDX"]).astype(np.int64).ravel() - 1
    if qidx.min() < 0 or qidx.max() >= table.shape[0]:
        raise EvaluationInputError(f"{qpath}: query_IDX outside 1..{table.shape[0]}")
    return table[:, 2].astype(np.int64), table[:, 3].astype(np.int64), qidx


# ----------------------------------------------------------------------------- 2 cameras
def two_camera_split_indices(pids, cams, test_pids, probe_cam, gallery_cam, *, split=None):
    """Probe / gallery tracklet indices of one split (iLIDS-VID, PRID2011).

    probe = the test persons' tracklet in ``probe_cam`` (cam1 / cam_a), gallery = their
    tracklet in ``gallery_cam``; both sorted by ``test_pids`` order.  Every test person must
    have exactly one tracklet in each camera.
    """
    pids = _as_1d("pids", pids)
    cams = _as_1d("cams", cams)
    test_pids = _as_1d("test_pids", test_pids)
    tag = f"split {split}: " if split is not None else ""
    if pids.shape != cams.shape:
        raise EvaluationInputError(f"{tag}pids ({pids.size}) and cams ({cams.size}) differ")
    out = []
    for cam in (probe_cam, gallery_cam):
        sel = np.flatnonzero(cams == cam)
        lookup = {}
        for i in sel:
            if pids[i] in lookup:
                raise EvaluationInputError(f"{tag}pid {pids[i]} has several tracklets in "
                                           f"camera {cam!r}")
            lookup[pids[i]] = i
        missing = [p for p in test_pids if p not in lookup]
        if missing:
            raise EvaluationInputError(f"{tag}{len(missing)} test pids have no tracklet in "
                                       f"camera {cam!r}, e.g. {missing[:3]}")
        out.append(np.array([lookup[p] for p in test_pids], dtype=np.int64))
    return out[0], out[1]


def _check_two_camera(source, probe_pids, gallery_pids, what):
    pp = _as_1d("probe_pids", probe_pids)
    gp = _as_1d("gallery_pids", gallery_pids)
    _check_source(source, pp.size, gp.size, what)
    missing = np.setdiff1d(pp, gp)
    if missing.size:
        raise EvaluationInputError(f"{what}: {missing.size} probes have no gallery match, "
                                   f"e.g. pids {missing[:3].tolist()}")
    return pp, gp


def evaluate_two_camera(source, probe_pids, gallery_pids, *, ranks=DEFAULT_RANKS,
                        max_rank=DEFAULT_MAX_RANK, workers=None, dataset=None, split=None,
                        method="ranks"):
    """One split of iLIDS-VID / PRID2011: source (n_probe, n_gallery), lower = better.

    method: "ranks" (no sort of the rows) or "sort" (the full-sort reference); equal results.
    """
    what = "evaluate_two_camera" + (f" (split {split})" if split is not None else "")
    ranks, max_rank = _check_ranks(ranks, max_rank)
    pp, gp = _check_two_camera(source, probe_pids, gallery_pids, what)
    return _two_camera_one(source, pp, gp, ranks, max_rank, workers, dataset, split, method)


def _two_camera_one(source, pp, gp, ranks, max_rank, workers, dataset, split, method="ranks"):
    # distinct camera labels for probe and gallery: "same pid" is then always "good"
    first, ap, _ = _evaluate_core(source, pp, np.zeros(pp.size, np.int8), gp,
                                  np.ones(gp.size, np.int8), np.zeros(gp.size, bool),
                                  "noninterp", workers, method)
    res = _summarise(first, ap, gp.size, ranks, max_rank)
    res.update(protocol=TWO_CAMERA, protocol_label=PROTOCOL_LABELS[TWO_CAMERA],
               dataset=dataset, split=split, num_queries=int(pp.size),
               num_evaluated=int(pp.size), num_no_match=0, num_gallery=int(gp.size),
               per_query={"ap": ap, "first_match_rank": first})
    return res


def evaluate_two_camera_splits(splits, *, dataset, expected_splits=10, ranks=DEFAULT_RANKS,
                               max_rank=DEFAULT_MAX_RANK, workers=None, ddof=0,
                               method="ranks"):
    """Mean and standard deviation over the splits (iLIDS-VID, PRID2011: 10 splits).

    splits: a sequence (split i at position i) or a mapping {split id 0..n-1: entry} of
        entries ``(source, probe_pids, gallery_pids)`` (or dicts with those keys).  Every
        split is checked (present, shapes, matches) before any is evaluated.
    ddof: for the standard deviation (0 = population std, NumPy's default).
    """
    what = f"evaluate_two_camera_splits({dataset})"
    ranks, max_rank = _check_ranks(ranks, max_rank)
    if isinstance(splits, dict):
        extra = sorted(set(splits) - set(range(expected_splits)), key=str)
        if extra:
            raise EvaluationInputError(f"{what}: unexpected split ids {extra}; "
                                       f"expected 0..{expected_splits - 1}")
        items = [splits.get(i) for i in range(expected_splits)]
    else:
        items = list(splits)
        if len(items) != expected_splits:
            raise EvaluationInputError(f"{what}: got {len(items)} splits, expected "
                                       f"{expected_splits}")
    missing = [i for i, s in enumerate(items) if s is None]
    if missing:
        raise EvaluationInputError(f"{what}: split(s) {missing} missing")
    checked = []
    for i, s in enumerate(items):
        if isinstance(s, dict):
            s = (s.get("source", s.get("dist")), s.get("probe_pids"), s.get("gallery_pids"))
        if len(s) != 3 or any(x is None for x in s):
            raise EvaluationInputError(f"{what}: split {i} must be (source, probe_pids, "
                                       "gallery_pids)")
        pp, gp = _check_two_camera(s[0], s[1], s[2], f"{what} split {i}")
        checked.append((s[0], pp, gp))
    per = [_two_camera_one(src, pp, gp, ranks, max_rank, workers, dataset, i, method)
           for i, (src, pp, gp) in enumerate(checked)]
    return combine_splits(per, dataset=dataset, ddof=ddof)


def combine_splits(per_split, *, dataset, ddof=0):
    """Mean/std over per-split result dicts (CMC curves cut to the shortest)."""
    n = min(len(r["cmc"]) for r in per_split)
    cmcs = np.array([r["cmc"][:n] for r in per_split])
    keys = list(per_split[0]["ranks"])
    rk = np.array([[r["ranks"][k] for k in keys] for r in per_split])
    maps = np.array([r["mAP"] for r in per_split])
    return {
        "protocol": TWO_CAMERA_SPLITS,
        "protocol_label": PROTOCOL_LABELS[TWO_CAMERA_SPLITS],
        "dataset": dataset,
        "num_splits": len(per_split),
        "std_ddof": ddof,
        "ranks": {k: float(v) for k, v in zip(keys, rk.mean(0))},
        "ranks_std": {k: float(v) for k, v in zip(keys, rk.std(0, ddof=ddof))},
        "mAP": float(maps.mean()),
        "mAP_std": float(maps.std(ddof=ddof)),
        "cmc": cmcs.mean(0).tolist(),
        "cmc_std": cmcs.std(0, ddof=ddof).tolist(),
        "num_queries": int(sum(r["num_queries"] for r in per_split)),
        "num_gallery": int(per_split[0]["num_gallery"]),
        "per_split": [{k: v for k, v in r.items() if k != "per_query"} for r in per_split],
    }


# ----------------------------------------------------------------------------- reference
def kit_reference_ap_cmc(good, junk, index):
    """Literal loop transcription of the Market-1501/MARS kit's compute_AP.m (slow).

    good, junk: gallery indices; index: gallery indices best first.  Returns (ap, cmc) with
    cmc of length len(index).  For cross-checking the vectorised code only.  With no good
    item it returns (nan, zeros) like MATLAB's 0/0.
    """
    good, junk = set(int(g) for g in good), set(int(j) for j in junk)
    cmc = np.zeros(len(index))
    ngood = len(good)
    old_recall, old_precision, ap = 0.0, 1.0, 0.0
    intersect, j, good_now, njunk = 0, 0, 0, 0
    for n, item in enumerate(index):
        item = int(item)
        flag = False
        if item in good:
            cmc[n - njunk:] = 1
            flag = True
            good_now += 1
        if item in junk:
            njunk += 1
            continue
        if flag:
            intersect += 1
        recall = intersect / ngood if ngood else float("nan")
        precision = intersect / (j + 1)
        ap += (recall - old_recall) * ((old_precision + precision) / 2)
        old_recall, old_precision = recall, precision
        j += 1
        if good_now == ngood:
            return ap, cmc
    return ap, cmc
