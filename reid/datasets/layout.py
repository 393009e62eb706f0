"""What a dataset parser returns: source tracklets (image files on disk) and splits.

The parsers (mars.py, ilidsvid.py, prid2011.py) read the official on-disk layouts of
DESIGN.md section 4 and return a `SourceDataset`; build.py turns it into the LMDB + index.
Everything here is layout-independent: the error type, the frame-number sort and the
small readers for .mat / json split files that all three parsers share.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class LayoutError(ValueError):
    """The source folder, an info/split file or a file name does not match the layout.

    The message always names the offending file or folder.
    """


@dataclass
class SourceTracklet:
    """One tracklet as found on disk, frames already sorted by frame number."""
    pid: int
    cam: int
    files: list[str]          # absolute paths, in frame-number order
    frames: list[int]         # frame numbers, ascending, same length as files
    source: str               # short human-readable name, e.g. 'bbox_test/0001/0001C1T0001'
    split: str = ''           # 'train' | 'test'
    role: str = ''            # 'query' | 'gallery' | ''
    tag: str = ''             # '' | 'distractor' (MARS pid -1) | 'junk' (MARS pid 0)

    @property
    def num_frames(self) -> int:
        return len(self.files)


@dataclass
class SourceDataset:
    """A parsed dataset layout: tracklets in index order plus (iLIDS-VID, PRID2011) splits."""
    name: str
    root: str
    tracklets: list[SourceTracklet]
    splits: list[dict] | None = None        # [{'train': [pid, ...], 'test': [pid, ...]}] x 10
    info: dict = field(default_factory=dict)  # parser facts worth keeping in the index


def sort_by_frame(files: list[str], frames: list[int], where: str) -> tuple[list[str], list[int]]:
    """Sort a tracklet's files by frame number (never trust glob/listdir/list order).

    Duplicate frame numbers mean two files claim the same frame: refuse, naming both.
    """
    order = sorted(range(len(frames)), key=frames.__getitem__)
    files = [files[i] for i in order]
    frames = [frames[i] for i in order]
    for a, b, fa, fb in zip(frames, frames[1:], files, files[1:]):
        if a == b:
            raise LayoutError(f"{where}: frame number {a} appears twice ({fa} and {fb})")
    return files, frames


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise LayoutError(f"{path}: folder not found ({what})")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise LayoutError(f"{path}: file not found ({what})")
    return path


def load_mat_variable(path: Path, variable: str) -> np.ndarray:
    """Read one numeric variable from a MATLAB .mat file with a clear error on any problem."""
    import scipy.io
    require_file(path, f"MATLAB file with variable '{variable}'")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises several types for truncated/garbage files
        raise LayoutError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from e
    if variable not in mat:
        have = sorted(k for k in mat if not k.startswith('__'))
        raise LayoutError(f"{path}: variable '{variable}' missing (has {have})")
    arr = np.asarray(mat[variable])
    if arr.dtype.kind not in 'iuf' or arr.size == 0:
        raise LayoutError(f"{path}: variable '{variable}' is not a non-empty numeric array "
                          f"(dtype {arr.dtype}, shape {arr.shape})")
    if arr.dtype.kind == 'f':
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise LayoutError(f"{path}: variable '{variable}' must hold integers")
    return arr.astype(np.int64)


def load_json(path: Path, what: str):
    require_file(path, what)
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: malformed JSON ({e})") from e


def list_files(folder: Path) -> list[str]:
    """Names of the plain files in a folder, ignoring hidden files (e.g. .DS_Store)."""
    return [e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith('.')]


def person_tracklet(folder: Path, cam: int, pid: int, frame_of, expected: str,
                    source: str) -> SourceTracklet:
    """One person in one camera of a two-camera dataset (iLIDS-VID, PRID2011): every file of
    `folder` is a frame; frame_of(name) gives its frame number, or None for a name that does
    not belong there (refused, naming the `expected` pattern)."""
    files, frames = [], []
    for n in list_files(folder):
        frame = frame_of(n)
        if frame is None:
            raise LayoutError(f"{folder / n}: unexpected file name (expected {expected})")
        files.append(str(folder / n))
        frames.append(frame)
    if not files:
        raise LayoutError(f"{folder}: person folder holds no frames")
    files, frames = sort_by_frame(files, frames, str(folder))
    return SourceTracklet(pid, cam, files, frames, source)


def check_splits(splits, valid_pids: set[int], where: str) -> list[dict]:
    """Validate 'train'/'test' pid lists: disjoint, known persons, same size in every split."""
    if not isinstance(splits, list) or not splits:
        raise LayoutError(f"{where}: expected a non-empty list of splits")
    out = []
    for k, s in enumerate(splits):
        if not isinstance(s, dict) or set(s) < {'train', 'test'}:
            raise LayoutError(f"{where}: split {k} must have 'train' and 'test' lists")
        train, test = [int(p) for p in s['train']], [int(p) for p in s['test']]
        if set(train) & set(test):
            raise LayoutError(f"{where}: split {k} has persons in both train and test: "
                              f"{sorted(set(train) & set(test))[:5]}")
        if len(set(train)) != len(train) or len(set(test)) != len(test):
            raise LayoutError(f"{where}: split {k} lists a person twice")
        unknown = sorted((set(train) | set(test)) - valid_pids)
        if unknown:
            raise LayoutError(f"{where}: split {k} names persons not in the dataset: {unknown[:5]}")
        out.append({'train': train, 'test': test})
    return out
