"""Extracted features in one HDF5 file per (run, weights, dataset) (paper 3.4; README
"Feature files").

What FeatureExtractor (reid/evaluation/features.py) computes for a set of tracklets -- F
(the TAM feature, averaged over the T-frame chunks), the pool5 volume of every one of those
chunks (the SRM's M of two tracklets is averaged over their aligned chunk pairs, eq. 2),
the TAM weights of the first chunk -- is written once with the tracklets' id,
pid, camera and role and the identity of what produced it: SHA-256 content hashes of the
caffemodel, of each deploy prototxt and of the dataset's index.json, plus the split and
the chunk mode.  Evaluation with another lambda, K or protocol then reads the file instead
of re-extracting; a file from other weights, nets or data is refused with the differences
named.  Plain HDF5 (no filters beyond the standard deflate): h5dump, HDFView or h5py open it.

Wiring: :class:`StoredFeatures` stands in for a FeatureExtractor (same ``extract``) and
reads the file when it holds what is asked for, so reid.evaluation.score and tools/evaluate.py
need no other change; :func:`check_reusable` lets a tool refuse a wrong file before anything
long starts.
"""
import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from reid.evaluation.features import CHUNKED, concat_tracklets, take_tracklets

FORMAT = "reid-features"
VERSION = 2                         # 2: the pool5 of every chunk (1: of the first only)
INDEX_NAME = "index.json"          # the dataset index whose content identifies the data
_HASH_BLOCK = 1 << 20
_WRITE_ROWS = 256                   # pool5 rows per write (progress)
ARRAYS = ("F", "pool5", "attention")   # what open() may load; "pool5": every chunk's volume


class FeatureStoreError(ValueError):
    """A feature file that is malformed or does not belong to the expected run / data."""


def file_sha256(path):
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Identity:
    """What a feature file was computed from; two files are interchangeable iff equal.

    weights: sha256 of the caffemodel; nets: {deploy net name: sha256 of its prototxt};
    dataset: sha256 of the dataset's index.json; split: the applied split (two-camera
    datasets) or -1; chunks: FeatureExtractor's mode ('all' or 'first').
    """
    weights: str
    nets: dict = field(default_factory=dict)
    dataset: str = ""
    split: int = -1
    chunks: str = "all"

    @classmethod
    def of(cls, weights, nets, dataset, chunks="all", split=None):
        """Hash the files: weights (path), nets ({name: prototxt path}), dataset (an open
        SequenceDataset, or the folder holding index.json); split: None for the dataset's
        applied split, -1 for features that belong to no split."""
        folder = Path(getattr(dataset, "folder", dataset))
        index = folder / INDEX_NAME
        for p in [Path(weights), index] + [Path(v) for v in nets.values()]:
            if not p.is_file():
                raise FeatureStoreError(f"{p}: not found (needed for the feature file identity)")
        if split is None:
            split = getattr(dataset, "split_index", None)
        return cls(weights=file_sha256(weights),
                   nets={k: file_sha256(v) for k, v in sorted(nets.items())},
                   dataset=file_sha256(index), split=-1 if split is None else int(split),
                   chunks=str(chunks))

    def attrs(self):
        out = {"weights_sha256": self.weights, "dataset_index_sha256": self.dataset,
               "split": self.split, "chunks": self.chunks}
        out.update({f"net_sha256.{k}": v for k, v in self.nets.items()})
        return out

    @classmethod
    def from_attrs(cls, attrs):
        nets = {k.split(".", 1)[1]: _text(v) for k, v in attrs.items()
                if k.startswith("net_sha256.")}
        return cls(weights=_text(attrs["weights_sha256"]), nets=nets,
                   dataset=_text(attrs["dataset_index_sha256"]), split=int(attrs["split"]),
                   chunks=_text(attrs["chunks"]))

    def differences(self, other):
        """Names of the fields in which self and other differ."""
        a, b = asdict(self), asdict(other)
        return [k for k in a if a[k] != b[k]]


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


class FeatureStore:
    """A feature file opened for reading: ``features`` is the dict FeatureExtractor.extract
    returns (F, attention when stored, chunk_offsets, chunk_starts, and with pool5 loaded
    pool5_chunks and pool5 = each tracklet's first chunk), rows in the order of ``tids``."""

    def __init__(self, path, identity, tids, pids, cams, roles, features, info):
        self.path, self.identity = path, identity
        self.tids, self.pids, self.cams, self.roles = tids, pids, cams, roles
        self.features, self.info = features, info

    # ---------------------------------------------------------------------- write
    @staticmethod
    def write(path, dataset, tids, extracted, identity, info=None, compression=None,
              progress=False):
        """Write FeatureExtractor output for ``tids`` of ``dataset``; returns the path.

        extracted: FeatureExtractor.extract output, of which 'F', 'pool5_chunks',
        'chunk_offsets', 'chunk_starts' and (optional) 'attention' are stored; info:
        free-form strings stored as attributes (run folder, file paths); compression: None
        or 'gzip' (deflate, readable by every HDF5 tool).  Written to a temporary name and
        renamed, so an interrupted write leaves no half file under ``path``.
        """
        import h5py
        tids = np.asarray(tids, dtype=np.int64)
        _check_extracted(path, extracted, tids.size)
        tr = [dataset.tracklets[int(t)] for t in tids]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"format": FORMAT, "version": VERSION,
                            "dataset_name": str(getattr(dataset, "name", ""))})
            f.attrs.update(identity.attrs())
            f.attrs.update({f"info.{k}": str(v) for k, v in (info or {}).items()})
            g = f.create_group("tracklets")
            g["tid"] = tids
            g["pid"] = np.array([t.pid for t in tr], dtype=np.int64)
            g["camera"] = np.array([t.cam for t in tr], dtype=np.int64)
            g["num_frames"] = np.array([t.num_frames for t in tr], dtype=np.int64)
            g["role"] = np.array([t.role for t in tr], dtype=h5py.string_dtype())
            f.create_dataset("F", data=extracted["F"], compression=compression)
            _write_pool5(f, path.name, extracted, compression, progress)
            if "attention" in extracted:
                f.create_dataset("attention", data=extracted["attention"],
                                 compression=compression)
        os.replace(tmp, path)
        return path

    # ---------------------------------------------------------------------- read
    @classmethod
    def open(cls, path, expect=None, tids=None, arrays=ARRAYS):
        """Read a feature file; with ``expect`` (an Identity) a file computed from other
        weights, nets, data, split or chunk mode is an error, as is (with ``tids``) one
        holding other tracklets.  ``arrays``: which of F, pool5, attention to load (the
        others stay on disk: :meth:`read_rows`)."""
        import h5py
        path = Path(path)
        if not path.is_file():
            raise FeatureStoreError(f"{path}: feature file not found")
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise FeatureStoreError(f"{path}: not an HDF5 file ({e})") from None
        with f:
            ident = _read_identity(path, f)
            if expect is not None and ident != expect:
                raise FeatureStoreError(
                    f"{path}: computed from other {', '.join(ident.differences(expect))} "
                    f"than expected (file {_short(ident)}, expected {_short(expect)}); "
                    "extract the features again or point to the right file")
            g = f["tracklets"]
            file_tids = g["tid"][()]
            if tids is not None and not np.array_equal(file_tids, np.asarray(tids)):
                raise FeatureStoreError(f"{path}: holds {file_tids.size} other tracklets than "
                                        f"the {len(tids)} asked for")
            offsets = _chunk_offsets(path, f["pool5_row"][()], file_tids.size)
            feats = {k: f[k][()] for k in arrays if k in f and k != "pool5"}
            feats.update(chunk_offsets=offsets, chunk_starts=f["pool5_start"][()])
            if "pool5" in arrays:       # every chunk, and the first one of each tracklet
                feats["pool5_chunks"] = f["pool5"][()]
                feats["pool5"] = feats["pool5_chunks"][offsets[:-1]]
            info = {k[5:]: _text(v) for k, v in f.attrs.items() if k.startswith("info.")}
            roles = np.array([_text(r) for r in g["role"][()]])
            return cls(path, ident, file_tids, g["pid"][()], g["camera"][()], roles, feats,
                       info)

    def first_pool5(self, rows):
        """pool5 of the first chunk of tracklet ``rows`` (search re-scoring), read from the
        file unless loaded."""
        if "pool5" in self.features:
            return self.features["pool5"][np.asarray(rows, dtype=np.int64)]
        return self.read_rows("pool5", self.features["chunk_offsets"][rows])

    def read_rows(self, name, rows):
        """Rows of a stored array (e.g. F of a few tracklets, or pool5 chunk rows), in the
        order of ``rows``, without loading the rest."""
        import h5py
        rows = np.asarray(rows, dtype=np.int64)
        uniq, inverse = np.unique(rows, return_inverse=True)   # h5py reads increasing rows
        with h5py.File(self.path, "r") as f:
            return f[name][uniq][inverse] if uniq.size else f[name][:0]

    def shape(self, name):
        import h5py
        with h5py.File(self.path, "r") as f:
            return f[name].shape


def is_feature_file(path):
    """Whether ``path`` is an HDF5 file with this module's format attribute (so one that
    re-extraction may overwrite)."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            return _text(f.attrs.get("format", "")) == FORMAT
    except OSError:
        return False


def check_reusable(path, identity, re_extract=False):
    """Before anything long: True when ``path`` holds features of ``identity`` (to be read),
    False when it is to be written (absent, or ``re_extract`` of a feature file); a file of
    another identity, or one that is no feature file, is an error naming the problem."""
    path = Path(path)
    if not path.exists():
        return False
    if re_extract:
        if not is_feature_file(path):
            raise FeatureStoreError(f"{path}: not a feature file (format {FORMAT!r}); "
                                    "re-extraction overwrites only those")
        return False
    FeatureStore.open(path, identity, arrays=())
    return True


class StoredFeatures:
    """A FeatureExtractor backed by one feature file (same ``extract``; paper 3.4, eq. 2).

    ``extract(dataset, tids, mode)`` reads the rows of ``tids`` from ``path`` when the file
    was computed from these weights, nets, data, split and chunk mode (another identity is
    an error), extracting only tracklets it lacks and adding them to the file (e.g. more
    two-camera splits than last time).  Without the file, or with ``re_extract`` (once), it
    extracts everything and writes the file.  ``make_extractor()`` builds the real
    extractor on first need, so a reuse never loads the trunk.  ``arrays``: what is read
    back (pool5 only where the SRM re-scores).
    """

    def __init__(self, path, weights, nets, make_extractor, split=-1, re_extract=False,
                 arrays=ARRAYS):
        self.path, self.weights, self.nets = Path(path), str(weights), dict(nets)
        self.make_extractor, self.extractor = make_extractor, None
        self.split, self.re_extract, self.arrays = split, re_extract, tuple(arrays)
        self.extracted = []             # tids extracted by this object, per call (reports)

    def extract(self, dataset, tids, mode="all", progress=True):
        tids = np.asarray(tids, dtype=np.int64)
        ident = Identity.of(self.weights, self.nets, dataset, chunks=mode, split=self.split)
        if not check_reusable(self.path, ident, self.re_extract):
            feats = self._extract(dataset, tids, mode, progress)
            self._write(dataset, tids, feats, ident, progress)
            self.re_extract = False
            return feats
        store = FeatureStore.open(self.path, ident, arrays=self.arrays)
        missing = np.setdiff1d(tids, store.tids)
        if missing.size:
            old = FeatureStore.open(self.path, ident).features
            new = self._extract(dataset, missing, mode, progress)
            self._write(dataset, np.concatenate([store.tids, missing]),
                        concat_tracklets(old, new), ident, progress)
            store = FeatureStore.open(self.path, ident, arrays=self.arrays)
        if np.array_equal(store.tids, tids):
            return store.features
        rows = {int(t): i for i, t in enumerate(store.tids)}
        return take_tracklets(store.features, [rows[int(t)] for t in tids])

    def _extract(self, dataset, tids, mode, progress):
        if self.extractor is None:
            self.extractor = self.make_extractor()
        self.extracted.append(tids)
        return self.extractor.extract(dataset, tids, mode=mode, progress=progress)

    def _write(self, dataset, tids, feats, ident, progress):
        info = dict(weights=self.weights, dataset=getattr(dataset, "folder", ""),
                    **{f"net.{k}": v for k, v in self.nets.items()})
        FeatureStore.write(self.path, dataset, tids, feats, ident, info, progress=progress)


REQUIRED = ("F", "pool5", "pool5_row", "pool5_start", "tracklets/tid", "tracklets/pid",
            "tracklets/camera", "tracklets/role", "tracklets/num_frames")


def _read_identity(path, f):
    if f.attrs.get("format") is None or _text(f.attrs["format"]) != FORMAT:
        raise FeatureStoreError(f"{path}: not a feature file (attribute format != {FORMAT!r})")
    version = int(f.attrs.get("version", -1))
    if version != VERSION:
        old = " (the pool5 of the first chunk only)" if version == 1 else ""
        raise FeatureStoreError(f"{path}: feature file version {version}{old}, this code "
                                f"reads version {VERSION} (the pool5 of every chunk); "
                                "extract again (tools/evaluate.py --re-extract)")
    missing = [k for k in REQUIRED if k not in f]
    if missing:
        raise FeatureStoreError(f"{path}: feature file lacks {missing}")
    n, m = f["tracklets/tid"].shape[0], f["pool5"].shape[0]
    bad = [k for k in REQUIRED + ("attention",) if k in f and f[k].shape[0] != n
           and not k.startswith("pool5")]
    if bad:
        raise FeatureStoreError(f"{path}: {bad} do not have one row per tracklet ({n})")
    bad = [k for k in ("pool5_row", "pool5_start") if f[k].shape[0] != m]
    if bad:
        raise FeatureStoreError(f"{path}: {bad} do not have one row per pool5 chunk ({m})")
    try:
        return Identity.from_attrs(f.attrs)
    except KeyError as e:
        raise FeatureStoreError(f"{path}: identity attribute {e} missing") from None


STORED = ("F", "pool5_chunks", "chunk_offsets", "chunk_starts")   # what write() needs


def _check_extracted(path, extracted, n):
    for key in STORED:
        if key not in extracted:
            raise FeatureStoreError(f"{path}: nothing to write: extracted features lack {key!r}")
    offsets = np.asarray(extracted["chunk_offsets"])
    if (offsets.shape != (n + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 1)):
        raise FeatureStoreError(f"{path}: extracted 'chunk_offsets' are not n + 1 = {n + 1} "
                                "increasing offsets from 0 (every tracklet has a chunk)")
    for key, v in extracted.items():
        rows = offsets[-1] if key in CHUNKED else n + 1 if key == "chunk_offsets" else n
        if np.shape(v)[0] != rows:
            what = "chunks" if key in CHUNKED else "tracklets"
            raise FeatureStoreError(f"{path}: extracted {key!r} has {np.shape(v)[0]} rows for "
                                    f"{offsets[-1] if key in CHUNKED else n} {what}")


def _write_pool5(f, name, extracted, compression, progress):
    """/pool5 (every chunk, one HDF5 chunk per row, written block by block with progress),
    /pool5_row (the tracklet row of each) and /pool5_start (its first frame)."""
    p5, offsets = extracted["pool5_chunks"], np.asarray(extracted["chunk_offsets"])
    ds = f.create_dataset("pool5", shape=p5.shape, dtype=p5.dtype,
                          chunks=(1,) + p5.shape[1:], compression=compression)
    for s in tqdm(range(0, len(p5), _WRITE_ROWS), desc="pool5 -> " + name, unit="block",
                  disable=not progress):
        ds[s:s + _WRITE_ROWS] = p5[s:s + _WRITE_ROWS]     # 24.4 GiB on MARS (README)
    f["pool5_row"] = np.repeat(np.arange(offsets.size - 1), np.diff(offsets)).astype(np.int64)
    f["pool5_start"] = np.asarray(extracted["chunk_starts"], dtype=np.int64)


def _chunk_offsets(path, pool5_row, n):
    """chunk_offsets (n + 1,) of a file's /pool5_row, which must list every tracklet row,
    each at least once, in increasing order (a tracklet's chunks are contiguous)."""
    inside = pool5_row.size == 0 or (pool5_row.min() >= 0 and pool5_row.max() < n)
    counts = np.bincount(pool5_row, minlength=n) if inside else np.zeros(n, int)
    if np.any(np.diff(pool5_row) < 0) or np.any(counts == 0):
        raise FeatureStoreError(f"{path}: /pool5_row does not give each of the {n} tracklets "
                                "one or more contiguous pool5 chunks in row order")
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _short(ident):
    nets = ",".join(f"{k}:{v[:8]}" for k, v in ident.nets.items())
    return (f"weights {ident.weights[:8]}, nets {nets}, dataset {ident.dataset[:8]}, "
            f"split {ident.split}, chunks {ident.chunks}")
