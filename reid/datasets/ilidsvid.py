"""iLIDS-VID layout parser (DESIGN.md section 4).

    SRC/i-LIDS-VID/sequences/cam1/person001/cam1_person001_00317.png   (cam2/... likewise)
    SRC/train-test people splits/train_test_splits_ilidsvid.mat
        variable ls_set, 10 x 300: each row a 1-based permutation over the sorted person
        folders; the first half of a row are the test persons, the last half the train persons.

Tracklets: one per person and camera, persons in sorted folder order, cam1 before cam2.
pid = the folder number (person001 -> 1; the real numbering has gaps). Evaluation: cam1 is
the probe (query), cam2 the gallery, averaged over the ten splits.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .layout import (LayoutError, SourceDataset, SourceTracklet, load_mat_variable,
                     person_tracklet, require_dir)

SEQ_DIR = Path('i-LIDS-VID') / 'sequences'
SPLITS_FILE = Path('train-test people splits') / 'train_test_splits_ilidsvid.mat'
SPLITS_VAR = 'ls_set'
CAMS = (1, 2)
PERSON_RE = re.compile(r'^person(\d{3})$')
FRAME_RE = re.compile(r'^cam(\d)_person(\d{3})_(\d+)\.png$')


def person_folder(pid: int) -> str:
    return 'person%03d' % pid


def frame_name(cam: int, pid: int, frame: int) -> str:
    """e.g. frame_name(1, 1, 317) == 'cam1_person001_00317.png'."""
    return 'cam%d_person%03d_%05d.png' % (cam, pid, frame)


def find_root(src: Path) -> Path:
    """SRC is the folder holding i-LIDS-VID/ (and 'train-test people splits/')."""
    if (src / SEQ_DIR).is_dir():
        return src
    if src.name == 'i-LIDS-VID' and (src / 'sequences').is_dir():
        return src.parent
    raise LayoutError(f"{src / SEQ_DIR}: folder not found (SRC must contain "
                      f"i-LIDS-VID/sequences/cam1, cam2 and '{SPLITS_FILE.parent}/')")


def _persons(cam_dir: Path) -> dict[int, str]:
    require_dir(cam_dir, 'iLIDS-VID camera folder')
    out = {}
    for name in sorted(p.name for p in cam_dir.iterdir() if p.is_dir()):
        m = PERSON_RE.match(name)
        if not m:
            raise LayoutError(f"{cam_dir / name}: not a person folder (expected personNNN)")
        out[int(m.group(1))] = name
    if not out:
        raise LayoutError(f"{cam_dir}: no person folders")
    return out


def _tracklet(folder: Path, cam: int, pid: int) -> SourceTracklet:
    def frame_of(name):
        m = FRAME_RE.match(name)
        ok = m and int(m.group(1)) == cam and int(m.group(2)) == pid
        return int(m.group(3)) if ok else None
    return person_tracklet(folder, cam, pid, frame_of,
                           frame_name(cam, pid, 0).replace('00000', 'FFFFF'),
                           f'cam{cam}/{person_folder(pid)}')


def read_ls_set(path: Path, num_persons: int) -> np.ndarray:
    ls = load_mat_variable(path, SPLITS_VAR)
    if ls.ndim != 2 or ls.shape[1] != num_persons or ls.shape[0] < 1:
        raise LayoutError(f"{path}: '{SPLITS_VAR}' has shape {ls.shape}; expected "
                          f"(10, {num_persons}) = splits x person folders")
    want = np.arange(1, num_persons + 1)
    for k, row in enumerate(ls):
        if not np.array_equal(np.sort(row), want):
            raise LayoutError(f"{path}: '{SPLITS_VAR}' row {k + 1} is not a permutation of "
                              f"1..{num_persons}")
    if num_persons % 2:
        raise LayoutError(f"{path}: odd number of persons ({num_persons}) cannot split in halves")
    return ls


def parse_ilidsvid(src: str | Path, splits_file: str | Path | None = None) -> SourceDataset:
    root = find_root(Path(src))
    seq = root / SEQ_DIR
    persons = {c: _persons(seq / f'cam{c}') for c in CAMS}
    if persons[1].keys() != persons[2].keys():
        odd = sorted(set(persons[1]) ^ set(persons[2]))[0]
        lacking = 2 if odd in persons[1] else 1
        raise LayoutError(f"{seq / f'cam{lacking}' / person_folder(odd)}: missing "
                          f"(every iLIDS-VID person must be in both cameras)")
    pids = sorted(persons[1])
    tracklets = [_tracklet(seq / f'cam{c}' / persons[c][p], c, p) for p in pids for c in CAMS]
    spath = Path(splits_file) if splits_file else root / SPLITS_FILE
    ls = read_ls_set(spath, len(pids))
    half = len(pids) // 2
    # ls_set entries index the sorted person folders (1-based); first half test, rest train.
    splits = [{'train': [pids[i - 1] for i in row[half:].tolist()],
               'test': [pids[i - 1] for i in row[:half].tolist()]} for row in ls]
    return SourceDataset('ilidsvid', str(root), tracklets, splits,
                         {'num_persons': len(pids), 'splits_file': str(spath)})


def prepare_ilidsvid(src, out, splits_file=None, **kw):
    """Parse SRC (iLIDS-VID layout) and build OUT/frames.lmdb + OUT/index.json."""
    from .build import build_dataset
    return build_dataset(parse_ilidsvid(src, splits_file), out, **kw)
