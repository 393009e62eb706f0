"""Searching galleries beyond memory: a FAISS index of F, the top K by d, eq. 2 on those K.

The d of the whole model (reid.ops.distance) is the Euclidean distance of L2-normalised F,
and d^2 = 2 - 2 <F^(x), F^(y)>: the nearest tracklets by d are those of largest inner
product, which a FAISS inner-product index finds without the gallery in one matrix.

- ``flat`` (default): IndexFlatIP, exhaustive.  Its float32 candidates (2K + 16 of them) are
  re-ranked by the exact float64 d of the stored F, ties by gallery row, so the top K is
  that of the protocols' stable sort of d (tests: equal).
- ``ivf``: IndexIVFFlat, F^ clustered into ``nlist`` lists by k-means, ``nprobe`` lists
  visited per query: approximate (recall@K in tests and reid/benchmarks/search.py).

With a metric net the K are re-scored with paper eq. 2, S = 1/(1+d) + lambda M (MetricScorer,
the SRM's first layer once per tracklet) and ordered by S, ties by gallery row, as
reid.evaluation.rerank does for a full matrix.  The gallery is one or more feature files
(reid/evaluation/feature_store.py); F is read block by block, pool5 only for candidates,
and only each tracklet's first chunk: M here is that of the first chunks, where the protocol
evaluation (reid.evaluation.score) averages M over all aligned chunk pairs.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from reid.ops.distance import euclidean_distance, l2_normalize

from .protocols import EvaluationInputError
from .rerank import order_index, similarity

KINDS = ("flat", "ivf")
BLOCK = 65536                       # gallery rows per add() / read


def _unit32(F):
    return np.ascontiguousarray(l2_normalize(np.asarray(F, dtype=np.float64))[0],
                                dtype=np.float32)


@dataclass
class GalleryIndex:
    """A FAISS index over gallery rows 0..n-1 and the F it was built from (for exact d)."""
    index: object
    kind: str
    F: object                       # (n, D) array or h5py-like, rows readable in order
    nprobe: int = 0
    build: dict = field(default_factory=dict)

    @classmethod
    def build_from(cls, F, kind="flat", nlist=None, nprobe=16, train_size=None, seed=0,
                   progress=True):
        """Index the rows of F (array-like (n, D), read in blocks of BLOCK rows).

        ivf: nlist lists (default ~4 sqrt(n)), k-means on ``train_size`` random rows
        (default 64 nlist, FAISS's own guidance is 39-256 per list), ``nprobe`` per query.
        """
        import faiss
        if kind not in KINDS:
            raise EvaluationInputError(f"index kind must be one of {KINDS}, got {kind!r}")
        n, D = F.shape
        if n == 0:
            raise EvaluationInputError("the gallery is empty")
        info = {"kind": kind, "n": int(n), "dim": int(D)}
        if kind == "flat":
            index = faiss.IndexFlatIP(D)
        else:
            nlist = int(nlist or max(1, min(n, round(4 * np.sqrt(n)))))
            if not 1 <= nlist <= n:
                raise EvaluationInputError(f"nlist must be in 1..{n}, got {nlist}")
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(D), D, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            m = int(min(n, train_size or 64 * nlist))
            rows = np.sort(np.random.default_rng(seed).choice(n, m, replace=False))
            index.train(_unit32(F[rows]))
            index.nprobe = int(min(nprobe, nlist))
            info.update(nlist=nlist, nprobe=index.nprobe, train_rows=m)
        for s in tqdm(range(0, n, BLOCK), desc="index", unit="block", disable=not progress):
            index.add(_unit32(F[s:s + BLOCK]))
        return cls(index, kind, F, getattr(index, "nprobe", 0), info)

    def search(self, Q, k, exact=True):
        """Top k gallery rows of each query feature (n_q, D) by d: (d (n_q, k) float64,
        rows (n_q, k) int64), nearest first.  ``exact``: re-rank the index's candidates by
        the float64 d of F (ties by row); otherwise d from the index's float32 scores."""
        Q = np.asarray(Q, dtype=np.float64)
        n = self.index.ntotal
        k = int(min(k, n))
        if k < 1:
            raise EvaluationInputError(f"k must be >= 1, got {k}")
        kk = min(n, 2 * k + 16) if exact else k
        scores, rows = self.index.search(_unit32(Q), kk)
        if not exact:
            return np.sqrt(np.maximum(2.0 - 2.0 * scores.astype(np.float64), 0.0)), rows
        d_out = np.empty((Q.shape[0], k))
        r_out = np.empty((Q.shape[0], k), dtype=np.int64)
        for i in range(Q.shape[0]):
            cand = np.unique(rows[i][rows[i] >= 0])   # IVF pads missing results with -1
            d = euclidean_distance(Q[i:i + 1], np.asarray(self.F[cand]))[0]
            order = np.lexsort((cand, d))[:k]
            m = order.size
            d_out[i, :m], r_out[i, :m] = d[order], cand[order]
            d_out[i, m:], r_out[i, m:] = np.inf, -1
        return d_out, r_out


def recall_at_k(found, truth):
    """Mean over queries of |found_i & truth_i| / |truth_i| (rows of gallery indices)."""
    hits = [np.intersect1d(f[f >= 0], t).size / max(len(t), 1) for f, t in zip(found, truth)]
    return float(np.mean(hits))


def rescore(d, rows, query_pool5, read_gallery_pool5, scorer, lam=1.0, query_batch=16):
    """Eq. 2 on the top K: S = 1/(1+d) + lam M for every (query, rows[i, j]) pair; returns
    (rows, d, S, M), each query's K ordered by S descending, ties by row.

    query_pool5: (n_q, T, C, H, W); read_gallery_pool5(sorted unique rows) -> their pool5
    (read from disk for the few candidates of ``query_batch`` queries at a time)."""
    from .features import Projections
    yq = Projections(scorer, query_pool5)
    M = np.empty(d.shape)
    for s in range(0, d.shape[0], query_batch):
        block = rows[s:s + query_batch]
        cand = np.unique(block[block >= 0])
        yg = Projections(scorer, read_gallery_pool5(cand))
        pos = np.searchsorted(cand, np.maximum(block, 0))
        q_idx = np.repeat(np.arange(s, s + block.shape[0]), block.shape[1])
        M[s:s + block.shape[0]] = scorer.score_projected(
            yq[q_idx], yg[pos.reshape(-1)]).reshape(block.shape)
    S = similarity(d, M, lam)
    S[rows < 0] = -np.inf
    idx = order_index(rows, S)
    return tuple(np.take_along_axis(x, idx, 1) for x in (rows, d, S, M))


# ------------------------------------------------------------------------------ gallery
class Gallery:
    """The rows of one or more feature files as one gallery (row = file after file)."""

    def __init__(self, stores):
        if not stores:
            raise EvaluationInputError("no gallery feature file")
        self.stores = stores
        self.offsets = np.cumsum([0] + [s.tids.size for s in stores])
        dims = {s.shape("F")[1] for s in stores}
        if len(dims) != 1:
            raise EvaluationInputError(f"the gallery files have features of dimensions {dims}")
        self.shape = (int(self.offsets[-1]), dims.pop())

    def __getitem__(self, rows):
        """F of gallery rows (a slice or increasing row indices)."""
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(self.shape[0]))
        return self._gather(rows, lambda st, local: st.features["F"][local]
                            if "F" in st.features else st.read_rows("F", local))

    def pool5(self, rows):
        """pool5 of the first chunk of increasing gallery rows, read from the files."""
        return self._gather(rows, lambda st, local: st.first_pool5(local))

    def _gather(self, rows, read):
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        return np.concatenate([read(self.stores[f], rows[which == f] - self.offsets[f])
                               for f in np.unique(which)])

    def describe(self, row):
        f = int(np.searchsorted(self.offsets, row, side="right") - 1)
        st, local = self.stores[f], int(row - self.offsets[f])
        return {"file": str(st.path), "tid": int(st.tids[local]), "pid": int(st.pids[local]),
                "camera": int(st.cams[local])}


def write_json(path, query_store, q_rows, gallery, d, rows, index_info, S=None, M=None,
               lam=None):
    """Ranked lists as JSON: per query its tracklet and the K gallery tracklets with d (and
    M, S when re-scored), best first."""
    out = {"index": index_info, "k": int(rows.shape[1]), "lambda": lam, "queries": []}
    for i, qr in enumerate(q_rows):
        items = []
        for j, g in enumerate(rows[i]):
            if g < 0:
                continue
            item = dict(gallery.describe(int(g)), d=float(d[i, j]))
            if S is not None:
                item.update(M=float(M[i, j]), S=float(S[i, j]))
            items.append(item)
        out["queries"].append({"file": str(query_store.path), "tid": int(query_store.tids[qr]),
                               "pid": int(query_store.pids[qr]),
                               "camera": int(query_store.cams[qr]), "ranked": items})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))
    return path


def run(gallery_files, query_file, out, *, k=100, kind="flat", nlist=None, nprobe=16,
        query_tids=None, metric=None, lam=1.0, dataset=None, figure_queries=8,
        progress=True):
    """tools/search.py: index the gallery files, search the query file's tracklets (those of
    role query, or ``query_tids``), re-score with ``metric`` = (deploy_metric prototxt,
    caffemodel) when given, write search.json (and ranked_lists.png with ``dataset``, an
    open SequenceDataset holding every tracklet).  Returns {name: path}."""
    from . import plots
    from .feature_store import FeatureStore
    gallery = Gallery([FeatureStore.open(p, arrays=("F",)) for p in gallery_files])
    qs = FeatureStore.open(query_file, arrays=("F",))       # pool5: first chunks, on demand
    if query_tids is None:
        q_rows = np.flatnonzero(qs.roles == "query")
    else:
        pos = {int(t): i for i, t in enumerate(qs.tids)}
        missing = [t for t in query_tids if int(t) not in pos]
        if missing:
            raise EvaluationInputError(f"{query_file}: no tracklet(s) {missing[:5]}")
        q_rows = np.array([pos[int(t)] for t in query_tids], dtype=np.int64)
    if q_rows.size == 0:
        raise EvaluationInputError(f"{query_file}: no query tracklets (role 'query')")
    index = GalleryIndex.build_from(gallery, kind, nlist, nprobe, progress=progress)
    d, rows = index.search(qs.features["F"][q_rows], k)
    S = M = None
    if metric:
        from .features import MetricScorer
        rows, d, S, M = rescore(d, rows, qs.first_pool5(q_rows), gallery.pool5,
                                MetricScorer(*metric), lam)
    out = Path(out)
    paths = {"json": write_json(out / "search.json", qs, q_rows, gallery, d, rows,
                                index.build, S, M, lam if metric else None)}
    if dataset is not None:
        tids = np.array([[gallery.describe(int(g))["tid"] if g >= 0 else -1 for g in r]
                         for r in rows[:figure_queries]])
        paths["figure"] = plots.tracklet_ranked_lists(
            dataset, qs.tids[q_rows[:figure_queries]], tids, out / "ranked_lists.png")
    return paths
