"""Tracklet index: the JSON file beside the frame LMDB (DESIGN.md section 4).

Frames of the whole dataset are numbered 0..N-1 in index order, tracklet after tracklet,
each tracklet's frames sorted by frame number; the LMDB key of frame g is b"%08d" % g
(lmdb_store.frame_key). So a tracklet is (start, num_frames) and any T consecutive frames
of it are one LMDB cursor range. The index records per tracklet: tid, pid, camera, frame
count, first key, split membership (train/test), query/gallery role, the MARS tag
(distractor pid -1 / junk pid 0) and the source frame numbers; for iLIDS-VID and PRID2011
also all ten splits, of which one (split_index) is applied to the per-tracklet fields.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .layout import LayoutError, SourceDataset

INDEX_FORMAT = 'reid-tracklet-index'
INDEX_VERSION = 1
KEY_FORMAT = b'%08d'


def frame_key(global_frame: int) -> bytes:
    """LMDB key of a frame: zero-padded so lexicographic order == frame order."""
    return KEY_FORMAT % global_frame


@dataclass
class Tracklet:
    tid: int
    pid: int
    cam: int
    num_frames: int
    start: int                 # global frame number of the first frame (its key = frame_key(start))
    split: str = ''            # 'train' | 'test'
    role: str = ''             # 'query' | 'gallery' | ''
    tag: str = ''              # '' | 'distractor' (MARS pid -1) | 'junk' (MARS pid 0)
    source: str = ''           # where it came from, e.g. 'bbox_test/0001/0001C1T0001'
    frames: list[int] = field(default_factory=list)   # source frame numbers, ascending

    @property
    def keys(self) -> list[bytes]:
        return [frame_key(self.start + i) for i in range(self.num_frames)]


_FIELDS = [f.name for f in fields(Tracklet)]   # asdict() deep-copies: 20x slower on MARS


class TrackletIndex:
    """All tracklets of a prepared dataset plus its splits; save/load as JSON."""

    def __init__(self, name: str, tracklets: list[Tracklet], splits: list[dict] | None = None,
                 split_index: int = 0, meta: dict | None = None):
        self.name = name
        self.tracklets = tracklets
        self.splits = splits
        self.meta = dict(meta or {})
        self.split_index = None
        if splits is not None:
            self.apply_split(split_index)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_source(cls, src: SourceDataset, meta: dict | None = None) -> 'TrackletIndex':
        """Assign tids and contiguous frame keys to a parsed layout (no images are read)."""
        tracklets, start = [], 0
        for tid, st in enumerate(src.tracklets):
            tracklets.append(Tracklet(tid=tid, pid=st.pid, cam=st.cam, num_frames=st.num_frames,
                                      start=start, split=st.split, role=st.role, tag=st.tag,
                                      source=st.source, frames=list(st.frames)))
            start += st.num_frames
        m = {'source_root': src.root, **src.info, **(meta or {})}
        return cls(src.name, tracklets, src.splits, 0, m)

    # ---- splits (iLIDS-VID, PRID2011) -----------------------------------------------------
    def apply_split(self, k: int) -> None:
        """Set split/role of every tracklet from split k (probe = the first camera)."""
        if self.splits is None:
            raise ValueError(f"{self.name}: has a single official split, no split {k}")
        if not 0 <= k < len(self.splits):
            raise IndexError(f"{self.name}: split {k} out of range 0..{len(self.splits) - 1}")
        train, test = set(self.splits[k]['train']), set(self.splits[k]['test'])
        probe_cam = min(t.cam for t in self.tracklets) if self.tracklets else 1
        for t in self.tracklets:
            if t.pid in test:
                t.split, t.role = 'test', ('query' if t.cam == probe_cam else 'gallery')
            elif t.pid in train:
                t.split, t.role = 'train', ''
            else:
                t.split, t.role = '', ''
        self.split_index = k

    # ---- numpy views ----------------------------------------------------------------------
    @property
    def pids(self) -> np.ndarray:
        return np.array([t.pid for t in self.tracklets], dtype=np.int64)

    @property
    def cams(self) -> np.ndarray:
        return np.array([t.cam for t in self.tracklets], dtype=np.int64)

    @property
    def num_frames(self) -> np.ndarray:
        return np.array([t.num_frames for t in self.tracklets], dtype=np.int64)

    def indices(self, *, split: str | None = None, role: str | None = None) -> np.ndarray:
        keep = [t.tid for t in self.tracklets
                if (split is None or t.split == split) and (role is None or t.role == role)]
        return np.array(keep, dtype=np.int64)

    @property
    def total_frames(self) -> int:
        return sum(t.num_frames for t in self.tracklets)

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {'format': INDEX_FORMAT, 'version': INDEX_VERSION, 'name': self.name,
                'split_index': self.split_index, 'splits': self.splits, 'meta': self.meta,
                'num_frames': self.total_frames,
                'tracklets': [{f: getattr(t, f) for f in _FIELDS} for t in self.tracklets]}

    def to_json(self) -> str:
        # One tracklet per line keeps the file diffable and greppable.
        d = self.to_dict()
        tracks = d.pop('tracklets')
        head = json.dumps(d, separators=(',', ':'))
        lines = ',\n'.join(json.dumps(t, separators=(',', ':')) for t in tracks)
        return head[:-1] + ',"tracklets":[\n' + lines + '\n]}\n'

    def save(self, path: str | os.PathLike) -> None:
        with open(path, 'w', encoding='utf-8') as f:
            f.write(self.to_json())

    @classmethod
    def from_dict(cls, d: dict, where: str = 'index') -> 'TrackletIndex':
        if not isinstance(d, dict) or d.get('format') != INDEX_FORMAT:
            raise LayoutError(f"{where}: not a tracklet index (format != {INDEX_FORMAT!r})")
        if d.get('version') != INDEX_VERSION:
            raise LayoutError(f"{where}: index version {d.get('version')} != {INDEX_VERSION}")
        try:
            tracklets = [Tracklet(**t) for t in d['tracklets']]
        except (KeyError, TypeError) as e:
            raise LayoutError(f"{where}: malformed tracklet entry ({e})") from e
        # Stored split/role fields are those of split_index; re-applying is idempotent.
        idx = cls(d['name'], tracklets, d.get('splits'), d.get('split_index') or 0, d.get('meta'))
        return idx

    @classmethod
    def from_json(cls, text: str | bytes, where: str = 'index') -> 'TrackletIndex':
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LayoutError(f"{where}: malformed JSON ({e})") from e
        return cls.from_dict(d, where)

    @classmethod
    def load(cls, path: str | os.PathLike) -> 'TrackletIndex':
        path = Path(path)
        if not path.is_file():
            raise LayoutError(f"{path}: tracklet index not found")
        return cls.from_json(path.read_bytes(), str(path))
