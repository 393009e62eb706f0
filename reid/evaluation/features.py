"""Running trained nets over a prepared dataset (paper 3.1, eq. 2; docs/DESIGN.md §1.3).

FeatureExtractor: F(x) of every tracklet from the deploy_features net, the tracklet cut into
chunks of T frames and F averaged over them (default) or from its first T frames; the pool5
volume of every one of those chunks (so that M sees the same chunks as F); the pool5 volume
and the TAM attention weights of the first chunk. MetricScorer: M(xi, xj) from the
deploy_metric net for pairs of pool5 volumes, in batches, as the metric_fn of
reid.evaluation.rerank, with the SRM's first (linear) layer applied once per tracklet; for
tracklets, M is averaged over their aligned chunk pairs
(aligned_chunk_pairs, chunk_pair_metric).
"""
import os

import numpy as np
from tqdm import tqdm

from reid.datasets.transform import CAFFE_MEAN_BGR, to_blob


def check_weights_fit(net, weights_path):
    """Raise a clear error (instead of Caffe's abort) if the caffemodel does not fit `net`."""
    from caffe.proto import caffe_pb2
    if not os.path.isfile(weights_path):
        raise FileNotFoundError("weights file %s does not exist" % weights_path)
    model = caffe_pb2.NetParameter()
    with open(weights_path, "rb") as f:
        try:
            model.ParseFromString(f.read())
        except Exception as e:      # protobuf's DecodeError is no ValueError
            raise ValueError("%s is not a caffemodel (%s)" % (weights_path, e)) from None
    stored = {layer.name: [tuple(b.shape.dim) or (b.num, b.channels, b.height, b.width)
                           for b in layer.blobs] for layer in model.layer if layer.blobs}
    # Caffe's copy_from silently skips layers the caffemodel lacks, leaving them at their
    # random initialisation, e.g. the TAM of an ALL net loaded with a CNN model.
    missing = [name for name in net.params if name not in stored]
    if missing and len(missing) < len(net.params):
        raise ValueError("%s does not fit the deploy net: it has no weights for layer(s) %s "
                         "(trained with another variant?)" % (weights_path, missing[:6]))
    matched = 0
    for name, params in net.params.items():
        if name not in stored:
            continue
        want = [p.data.shape for p in params]
        if len(stored[name]) != len(want) or any(
                int(np.prod(s)) != int(np.prod(w)) for s, w in zip(stored[name], want)):
            raise ValueError("%s does not fit the deploy net: layer %r has blobs %s there but %s "
                             "in the net" % (weights_path, name, stored[name], want))
        matched += 1
    if matched == 0 and net.params:
        raise ValueError("%s shares no layer with the deploy net (was it trained with another "
                         "variant or net?)" % weights_path)


def load_net(prototxt, weights):
    import caffe
    net = caffe.Net(prototxt, caffe.TEST)
    check_weights_fit(net, weights)
    net.copy_from(weights)
    return net


def aligned_chunk_pairs(n_a, n_b):
    """The chunk pairs over which M of two tracklets is averaged: chunk k of one with chunk k
    of the other, the tracklet with fewer chunks cycling, so every chunk of both takes part
    (max(n_a, n_b) pairs), as every chunk takes part in F."""
    n = max(n_a, n_b)
    return [(k % n_a, k % n_b) for k in range(n)]


def chunk_pair_metric(metric, a_chunks, a_offsets, b_chunks, b_offsets, a_idx, b_idx):
    """M of tracklet pairs (a_idx[p], b_idx[p]): the mean of metric(volumes, volumes) over
    their aligned chunk pairs, all pairs' chunk pairs in one call. Tracklet i's chunks are
    rows a_offsets[i]:a_offsets[i + 1] of a_chunks (likewise b). metric: volumes (n, ...)
    twice -> (n,)."""
    rows_a, rows_b, owner = [], [], []
    for p, (i, j) in enumerate(zip(np.asarray(a_idx), np.asarray(b_idx))):
        a0, b0 = a_offsets[i], b_offsets[j]
        for ka, kb in aligned_chunk_pairs(a_offsets[i + 1] - a0, b_offsets[j + 1] - b0):
            rows_a.append(a0 + ka)
            rows_b.append(b0 + kb)
            owner.append(p)
    m = np.asarray(metric(a_chunks[rows_a], b_chunks[rows_b]), dtype=np.float64)
    owner = np.asarray(owner)
    return np.bincount(owner, m, len(a_idx)) / np.bincount(owner, minlength=len(a_idx))


def chunk_starts(num_frames, T, mode="all"):
    """Starts of the T-frame chunks of a tracklet; the last chunk ends at the last frame
    (shorter tracklets loop from 0)."""
    if mode == "first" or num_frames <= T:
        return [0]
    starts = list(range(0, num_frames - T + 1, T))
    if starts[-1] + T < num_frames:
        starts.append(num_frames - T)
    return starts


CHUNKED = ("pool5_chunks", "chunk_starts")     # extract()'s arrays with one row per chunk


def take_tracklets(feats, rows):
    """FeatureExtractor.extract output restricted to (and ordered as) tracklet ``rows``:
    per-tracklet arrays indexed, the chunk arrays gathered and chunk_offsets rebuilt."""
    rows = np.asarray(rows, dtype=np.int64)
    out = {k: v[rows] for k, v in feats.items() if k not in CHUNKED + ("chunk_offsets",)}
    if "chunk_offsets" in feats:
        off = feats["chunk_offsets"]
        lo, hi = off[rows], off[rows + 1]
        out["chunk_offsets"] = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
        chunk_rows = (np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])
                      if rows.size else np.zeros(0, np.int64))
        out.update({k: feats[k][chunk_rows] for k in CHUNKED if k in feats})
    return out


def concat_tracklets(a, b):
    """Two FeatureExtractor.extract outputs (same keys) as one: b's tracklets after a's."""
    out = {k: np.concatenate([a[k], b[k]]) for k in a if k != "chunk_offsets"}
    if "chunk_offsets" in a:
        out["chunk_offsets"] = np.concatenate([a["chunk_offsets"],
                                               a["chunk_offsets"][-1] + b["chunk_offsets"][1:]])
    return out


class FeatureExtractor:
    def __init__(self, prototxt, weights, mean=CAFFE_MEAN_BGR):
        self.net = load_net(prototxt, weights)
        self.mean = mean
        self.N = self.net.blobs["F"].data.shape[0]
        frames, _, self.height, self.width = self.net.blobs["data"].data.shape
        self.T = frames // self.N

    def _run(self, clips):
        """F, pool5, attention of up to N clips (T, H, W, 3); pads the batch by repetition."""
        n = len(clips)
        clips = clips + [clips[-1]] * (self.N - n)
        self.net.blobs["data"].data[...] = to_blob(np.stack(clips), self.mean)
        self.net.forward()
        out = {"F": self.net.blobs["F"].data[:n].copy(),
               "pool5": self.net.blobs["pool5_seq"].data[:n].copy()}
        if "attention" in self.net.blobs:
            out["attention"] = self.net.blobs["attention"].data[:n].copy()
        return out

    def extract(self, dataset, tids=None, mode="all", progress=True):
        """{'F': (n, D), 'pool5': (n, T, C, H, W) of the first chunk, 'attention': (n, T, T)
        or absent, 'pool5_chunks': (chunks, T, C, H, W) of every chunk F averaged over,
        'chunk_offsets': (n + 1,), tracklet i's chunks being rows offsets[i]:offsets[i+1],
        'chunk_starts': (chunks,) the first frame of each}.  (MARS test set, paper net:
        118,491 chunks, pool5_chunks 24.4 GiB; mode='first' keeps one chunk per tracklet,
        2.5 GiB, but then F and M see only the first T frames.)"""
        tids = list(range(len(dataset)) if tids is None else tids)
        jobs = [(i, s) for i, tid in enumerate(tids)
                for s in chunk_starts(dataset.tracklets[tid].num_frames, self.T, mode)]
        sums, counts, first, chunks = None, np.zeros(len(tids)), {}, []
        bar = tqdm(total=len(jobs), desc="features", unit="clip", disable=not progress)
        for b in range(0, len(jobs), self.N):
            batch = jobs[b:b + self.N]
            clips = [dataset.read(tids[i], s, self.T, (self.height, self.width))
                     for i, s in batch]
            out = self._run(clips)
            if sums is None:
                sums = np.zeros((len(tids), out["F"].shape[1]))
            chunks.append(out["pool5"])
            for j, (i, _) in enumerate(batch):
                sums[i] += out["F"][j]
                counts[i] += 1
                if i not in first:
                    first[i] = {k: v[j] for k, v in out.items() if k != "F"}
            bar.update(len(batch))
        bar.close()
        result = {"F": sums / counts[:, None], "pool5_chunks": np.concatenate(chunks),
                  "chunk_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                  "chunk_starts": np.array([s for _, s in jobs], dtype=np.int64)}
        for key in first[0]:
            result[key] = np.stack([first[i][key] for i in range(len(tids))])
        return result


class MetricScorer:
    """M(xi, xj) = softmax(logits)[same] of the SRM / DIFF head for pool5 pairs (paper 3.3).

    The head's first operation is linear (reid/nets/metric.py): srm_reduce, a 1x1 conv of
    D = pool5(xi) - pool5(xj), equals Y(xi) - Y(xj) + bias with Y = W pool5 (per frame and
    position).  So every tracklet is projected once (:meth:`project`, C -> C1 channels, one
    NumPy GEMM), a pair costs a subtraction, and the deploy net runs from the ReLU after
    srm_reduce on (``net.forward(start=...)``): the same net and caffemodel, its srm_diff and
    srm_reduce layers skipped.  :meth:`full_forward` is the whole net on the pool5 pairs,
    kept as the reference (equal to float32 rounding).
    """
    REDUCE, AFTER_REDUCE = "srm_reduce", "srm_reduce_relu"

    def __init__(self, prototxt, weights):
        self.net = load_net(prototxt, weights)
        self.N, self.T = self.net.blobs["pool5_a"].data.shape[:2]
        if self.REDUCE not in self.net.params or self.AFTER_REDUCE not in self.net._layer_names:
            raise ValueError("%s: no %s / %s layers: not a deploy_metric net of reid.nets"
                             % (prototxt, self.REDUCE, self.AFTER_REDUCE))
        w, b = self.net.params[self.REDUCE]
        self.W = w.data.reshape(w.data.shape[0], -1).copy()          # (C1, C)
        self.bias = b.data.reshape(1, 1, -1, 1, 1).copy()

    def project(self, pool5):
        """Y = W pool5 without bias: (n, T, C, H, W) -> (n, T, C1, H, W) float32."""
        x = np.asarray(pool5, dtype=np.float32)
        n, T, C, H, W = x.shape
        y = np.matmul(self.W, x.reshape(n * T, C, H * W))
        return y.reshape(n, T, -1, H, W)

    def score_projected(self, ya, yb):
        """M for pairs of projected volumes ya[i], yb[i] (n, T, C1, H, W)."""
        out = np.empty(len(ya))
        e = self.net.blobs[self.REDUCE].data.reshape((self.N,) + ya.shape[1:])  # a view
        for s in range(0, len(ya), self.N):
            n = min(self.N, len(ya) - s)
            np.subtract(ya[s:s + n], yb[s:s + n], out=e[:n])
            e[:n] += self.bias
            e[n:] = e[n - 1]
            self.net.forward(start=self.AFTER_REDUCE)
            out[s:s + n] = self.net.blobs["prob"].data[:n, 1]
        return out

    def __call__(self, a, b):
        """a, b: (n, T, C, H, W) pool5 volumes; returns M (n,)."""
        return self.score_projected(self.project(a), self.project(b))

    def full_forward(self, a, b):
        """M through the whole net, srm_diff and srm_reduce included (the reference)."""
        out = np.empty(len(a))
        for s in range(0, len(a), self.N):
            n = min(self.N, len(a) - s)
            for name, x in (("pool5_a", a), ("pool5_b", b)):
                blob = self.net.blobs[name].data
                blob[:n] = x[s:s + n]
                blob[n:] = x[s + n - 1]
            self.net.forward()
            out[s:s + n] = self.net.blobs["prob"].data[:n, 1]
        return out

    def metric_fn(self, query_pool5, gallery_pool5):
        """The rerank metric_fn: M for (query row, gallery column) index pairs; each
        tracklet is projected once, when a pair first needs it."""
        yq, yg = Projections(self, query_pool5), Projections(self, gallery_pool5)

        def fn(q_idx, g_idx):
            return self.score_projected(yq[np.asarray(q_idx)], yg[np.asarray(g_idx)])
        return fn

    def chunk_metric_fn(self, feats, q_rows, g_rows):
        """The rerank metric_fn over tracklets: M averaged over the aligned chunk pairs
        (chunk_pair_metric) of query row q_rows[q] and gallery row g_rows[g] of `feats`
        (FeatureExtractor.extract output); each chunk is projected once (Projections)."""
        chunks, offsets = Projections(self, feats["pool5_chunks"]), feats["chunk_offsets"]
        q_rows, g_rows = np.asarray(q_rows), np.asarray(g_rows)

        def fn(q_idx, g_idx):
            return chunk_pair_metric(self.score_projected, chunks, offsets, chunks, offsets,
                                     q_rows[np.asarray(q_idx)], g_rows[np.asarray(g_idx)])
        return fn


class Projections:
    """Y = W pool5 of the rows of a pool5 array, each computed on first use and kept."""
    BLOCK = 256                         # rows projected per GEMM (bounds the pool5 copy)

    def __init__(self, scorer, pool5):
        self.scorer, self.pool5 = scorer, pool5
        self.y, self.done = None, np.zeros(len(pool5), dtype=bool)

    def __getitem__(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        todo = np.unique(idx[~self.done[idx]])
        for s in range(0, todo.size, self.BLOCK):
            rows = todo[s:s + self.BLOCK]
            y = self.scorer.project(self.pool5[rows])
            if self.y is None:          # pages are touched only for rows projected
                self.y = np.empty((len(self.pool5),) + y.shape[1:], dtype=y.dtype)
            self.y[rows] = y
            self.done[rows] = True
        return self.y[idx]
