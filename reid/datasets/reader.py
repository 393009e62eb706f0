"""Reader API over a prepared dataset (OUT/frames.lmdb + OUT/index.json).

    with open_dataset('data/mars') as ds:
        seq = ds.read(tid, start=0, length=6, size=(227, 227))   # uint8 (6, 227, 227, 3) BGR

Used by the data layers, the evaluation and the tools. Frames of a tracklet are in
frame-number order; `read` loops a tracklet shorter than the request when loop=True
(the usual way to form T-frame sequences from short MARS tracklets) and raises otherwise.
One SequenceDataset per process: LMDB environments must not cross fork(), which is why
`Prefetcher` workers open their own.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
from multiprocessing import shared_memory
import warnings
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from .build import INDEX_NAME, LMDB_NAME
from .index import TrackletIndex
from .layout import LayoutError
from .lmdb_store import CorruptDatabaseError, LmdbFrames, decode_image, parse_datum


class ShortTrackletError(ValueError):
    """A read asked for more frames than a tracklet has, with loop=False."""


class SequenceDataset:
    """A prepared dataset: tracklet index + frame LMDB.

    split: for iLIDS-VID / PRID2011, which of the ten splits sets tracklet split/role.
    cv2_threads: OpenCV's thread count is set to this (process-wide) unless None. Frames are
    small, and OpenCV's own threading made decode+resize ~3x slower on 2 cores
    (reid/benchmarks/datasets.py), so the default is 1; parallelism comes from Prefetcher.
    """

    def __init__(self, folder: str | os.PathLike, split: int = 0, cv2_threads: int | None = 1):
        if cv2_threads is not None:
            cv2.setNumThreads(cv2_threads)
        self.folder = Path(folder)
        lmdb_path, index_path = self.folder / LMDB_NAME, self.folder / INDEX_NAME
        if not lmdb_path.is_file():
            raise LayoutError(f"{lmdb_path}: not found ({self.folder} is not a prepared dataset; "
                              f"run data_prep/prep_<dataset>.py)")
        self.store = LmdbFrames(lmdb_path)
        self.index = self._load_index(index_path)
        if self.index.splits is not None and split:
            self.index.apply_split(split)

    def _load_index(self, index_path: Path) -> TrackletIndex:
        """index.json, unless a build died between its two renames: then the LMDB's own copy."""
        build = self.store.meta()['build_id']
        if index_path.is_file():
            idx = TrackletIndex.load(index_path)
            if idx.meta.get('build_id') == build:
                self._check_frame_count(idx, index_path)
                return idx
            warnings.warn(f"{index_path}: from another build than {self.store.path}; using the "
                          f"index stored inside the LMDB (re-run prep to rewrite index.json)")
        raw = self.store.embedded_index()
        if raw is None:
            raise LayoutError(f"{self.store.path}: no embedded index and {index_path} unusable")
        idx = TrackletIndex.from_json(raw, f"{self.store.path}[__index__]")
        self._check_frame_count(idx, f"{self.store.path}[__index__]")
        return idx

    def _check_frame_count(self, idx: TrackletIndex, where) -> None:
        """The index, the build meta and the LMDB itself must agree on the number of frames."""
        counts = {'index': idx.total_frames, 'build meta': self.store.meta()['num_frames'],
                  'LMDB entries': self.store.num_frames()}
        if len(set(counts.values())) > 1:
            raise CorruptDatabaseError(f"{self.store.path}: frame counts disagree ({counts}, "
                                       f"index {where}); prepare the dataset again")

    # ---- index views -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.index.name

    @property
    def tracklets(self):
        return self.index.tracklets

    @property
    def pids(self) -> np.ndarray:
        return self.index.pids

    @property
    def cams(self) -> np.ndarray:
        return self.index.cams

    @property
    def num_frames(self) -> np.ndarray:
        return self.index.num_frames

    @property
    def splits(self):
        return self.index.splits

    @property
    def split_index(self):
        return self.index.split_index

    def set_split(self, k: int) -> None:
        """iLIDS-VID / PRID2011: make split k (0..9) the current one (tracklet split/role)."""
        self.index.apply_split(k)

    @property
    def query_idx(self) -> np.ndarray:
        return self.index.indices(role='query')

    @property
    def gallery_idx(self) -> np.ndarray:
        """MARS official: every test tracklet (queries included); otherwise role 'gallery'."""
        if self.name == 'mars':
            return self.index.indices(split='test')
        return self.index.indices(role='gallery')

    @property
    def train_idx(self) -> np.ndarray:
        return self.index.indices(split='train')

    def __len__(self) -> int:
        return len(self.index.tracklets)

    # ---- frames ------------------------------------------------------------------------------
    def positions(self, tid: int, start: int = 0, length: int = 6, loop: bool = True) -> np.ndarray:
        """Frame positions (0-based within the tracklet) a read(tid, start, length) returns."""
        t = self.index.tracklets[tid]
        n = t.num_frames
        if not loop and (start < 0 or start + length > n):
            raise ShortTrackletError(
                f"tracklet {tid} ({t.source}) has {n} frames; frames {start}..{start + length - 1} "
                f"requested with loop=False")
        return (start + np.arange(length)) % n

    def read(self, tid: int, start: int = 0, length: int = 6, size: tuple[int, int] | None = None,
             loop: bool = True) -> np.ndarray:
        """`length` consecutive frames of tracklet tid from `start`: uint8 (L, H, W, 3) BGR."""
        t = self.index.tracklets[tid]
        pos = self.positions(tid, start, length, loop)
        keys = [t.start + int(p) for p in pos]
        if length <= t.num_frames and pos[-1] == pos[0] + length - 1:   # one cursor range
            raws = self.store.get_range(keys[0], length)
        else:
            raws = [self.store.get(g) for g in keys]
        return self._decode(raws, keys, size, tid)

    def read_frames(self, tid: int, frame_positions,
                    size: tuple[int, int] | None = None) -> np.ndarray:
        """Arbitrary frames (0-based positions within the tracklet, e.g. a random subsample)."""
        t = self.index.tracklets[tid]
        pos = np.asarray(frame_positions, dtype=np.int64).ravel()
        if pos.size and (pos.min() < 0 or pos.max() >= t.num_frames):
            raise IndexError(f"tracklet {tid} ({t.source}) has {t.num_frames} frames; "
                             f"positions {pos.tolist()} requested")
        keys = [t.start + int(p) for p in pos]
        return self._decode([self.store.get(g) for g in keys], keys, size, tid)

    def read_raw(self, tid: int, position: int) -> bytes:
        """The encoded image bytes exactly as they were in the source file."""
        t = self.index.tracklets[tid]
        g = t.start + position
        return parse_datum(self.store.get(g), self.store.key_name(g)).data

    def _decode(self, raws, keys, size, tid) -> np.ndarray:
        imgs = []
        for r, g in zip(raws, keys):
            where = f"{self.store.key_name(g)} (tracklet {tid})"
            img = decode_image(parse_datum(r, where).data, where)
            if size is not None and img.shape[:2] != tuple(size):
                img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            imgs.append(img)
        if size is None and len({i.shape for i in imgs}) > 1:
            raise ValueError(f"tracklet {tid}: frames differ in size; pass size=(H, W)")
        if not imgs:
            return np.zeros((0,) + (tuple(size) if size else (0, 0)) + (3,), np.uint8)
        return np.stack(imgs)

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"SequenceDataset({self.folder}, {self.name}: {len(self)} tracklets, "
                f"{self.index.total_frames} frames)")


def open_dataset(folder: str | os.PathLike, split: int = 0,
                 cv2_threads: int | None = 1) -> SequenceDataset:
    """Open a prepared dataset folder (written by data_prep/prep_<dataset>.py)."""
    return SequenceDataset(folder, split, cv2_threads)


# ---- multi-process prefetch -----------------------------------------------------------------
def _die_with_parent():
    """Linux: SIGTERM this worker when its parent exits. Workers forked by the `caffe` tool's
    embedded Python are not reaped at its exit, and would otherwise live on, holding the
    tool's stdout open.

    The fork inherits the `caffe` tool's glog failure handler, which prints "*** Aborted ...
    SIGTERM ... stack trace" for that expected SIGTERM: restore the default (a quiet exit)
    first. Ctrl-C reaches the whole process group; the parent decides what it means (Caffe
    snapshots and stops), so the worker ignores it rather than dying with a traceback."""
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(folder, size, loop, shm_name, slot_shape, jobs, results):
    _die_with_parent()
    shm = shared_memory.SharedMemory(name=shm_name)
    slots = np.ndarray((shm.size // int(np.prod(slot_shape)),) + slot_shape, np.uint8, shm.buf)
    ds = open_dataset(folder)
    try:
        while True:
            job = jobs.get()
            if job is None:
                break
            ticket, slot, tid, start, length = job
            try:
                slots[slot, :length] = ds.read(tid, start, length, size, loop)
                results.put((ticket, slot, length, None))
            except Exception as e:  # the consumer re-raises it with the worker's message
                results.put((ticket, slot, 0, f"{type(e).__name__}: {e}"))
    finally:
        ds.close()
        del slots
        shm.close()


class Prefetcher:
    """Decode sequences in worker processes, returned in request order.

        with Prefetcher('data/mars', workers=2, size=(227, 227)) as pf:
            for seq in pf.imap((tid, start, 6) for tid, start in requests):
                ...

    Workers are forked (the `caffe` binary's embedded Python cannot spawn a new interpreter)
    and each opens its own LMDB environment. Decoded sequences come back through a shared
    memory ring of `depth` slots (no pickling of ~1 MB arrays); max_length bounds a request.
    """

    def __init__(self, folder, workers: int = 2, size=(227, 227), loop: bool = True,
                 depth: int = 8, max_length: int = 16, start_method: str | None = None):
        if size is None:
            raise ValueError("Prefetcher needs a fixed frame size (H, W)")
        ctx = mp.get_context(start_method or ('fork' if 'fork' in mp.get_all_start_methods()
                                              else 'spawn'))
        self.depth, self.max_length = max(1, depth), max_length
        self.slot_shape = (max_length, int(size[0]), int(size[1]), 3)
        self.shm = shared_memory.SharedMemory(create=True,
                                              size=self.depth * int(np.prod(self.slot_shape)))
        self.slots = np.ndarray((self.depth,) + self.slot_shape, np.uint8, self.shm.buf)
        self.jobs, self.results = ctx.Queue(), ctx.Queue()
        self.procs = [ctx.Process(target=_worker, daemon=True,
                                  args=(str(folder), tuple(size), loop, self.shm.name,
                                        self.slot_shape, self.jobs, self.results))
                      for _ in range(max(1, workers))]
        for p in self.procs:
            p.start()
        self._free = list(range(self.depth))
        self._next_ticket = 0
        self._done: dict[int, tuple[int, int]] = {}

    def imap(self, requests):
        """Yield the sequence (uint8 (length, H, W, 3) BGR) of each (tid, start, length)."""
        it = iter(requests)
        waiting: deque[int] = deque()
        exhausted = False
        try:
            while True:
                while not exhausted and self._free:
                    try:
                        tid, start, length = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    waiting.append(self._submit(tid, start, length))
                if not waiting:
                    return
                yield self._collect(waiting.popleft())
        finally:
            # A consumer that stops early (break, exception) must not strand slots: wait for
            # the sequences still in flight and drop them.
            while waiting and self.procs:
                try:
                    self._collect(waiting.popleft())
                except RuntimeError:
                    pass

    def _submit(self, tid, start, length) -> int:
        if not 0 < length <= self.max_length:
            raise ValueError(f"length {length} outside 1..max_length={self.max_length}")
        t = self._next_ticket
        self._next_ticket += 1
        self.jobs.put((t, self._free.pop(), int(tid), int(start), int(length)))
        return t

    def _collect(self, ticket: int) -> np.ndarray:
        while ticket not in self._done:
            try:
                t, slot, length, err = self.results.get(timeout=60)
            except queue.Empty:
                dead = [p.pid for p in self.procs if not p.is_alive()]
                raise RuntimeError(f"Prefetcher: no result for 60 s (dead workers: {dead})")
            if err is not None:
                self._free.append(slot)
                raise RuntimeError(f"Prefetcher worker: {err}")
            self._done[t] = (slot, length)
        slot, length = self._done.pop(ticket)
        out = self.slots[slot, :length].copy()
        self._free.append(slot)
        return out

    def close(self) -> None:
        for _ in self.procs:
            self.jobs.put(None)
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        self.procs = []
        if self.shm is not None:
            del self.slots
            self.shm.close()
            self.shm.unlink()
            self.shm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


__all__ = ['SequenceDataset', 'open_dataset', 'Prefetcher', 'ShortTrackletError']
