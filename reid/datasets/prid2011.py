"""PRID2011 (multi-shot) layout parser (DESIGN.md section 4).

    SRC/prid_2011/multi_shot/cam_a/person_0001/0001.png       (cam_b/... likewise)
    splits json: [{'train': ['person_0001', ...], 'test': [...]}, ...] x 10 (89/89 persons)

Persons 1-200 appear in both cameras; the standard protocol uses the 178 of them named in
the splits file (the copy in data_prep/splits_prid2011.json is the one distributed with
common re-id toolkits). Only those persons are indexed: one tracklet per person and camera,
persons in number order, cam_a (cam 1, the probe) before cam_b (cam 2, the gallery).
"""
from __future__ import annotations

import re
from pathlib import Path

from .layout import (LayoutError, SourceDataset, SourceTracklet, check_splits, load_json,
                     person_tracklet, require_dir)

SHOT_DIR = Path('prid_2011') / 'multi_shot'
CAMS = {1: 'cam_a', 2: 'cam_b'}
PERSON_RE = re.compile(r'^person_(\d{4})$')
FRAME_RE = re.compile(r'^(\d+)\.png$')
DEFAULT_SPLITS = Path(__file__).resolve().parents[2] / 'data_prep' / 'splits_prid2011.json'


def person_folder(pid: int) -> str:
    return 'person_%04d' % pid


def frame_name(frame: int) -> str:
    return '%04d.png' % frame


def find_shot_dir(src: Path) -> Path:
    """Accept SRC = the folder holding prid_2011/, or prid_2011/ itself, or multi_shot/."""
    for cand in (src / SHOT_DIR, src / 'multi_shot', src):
        if (cand / 'cam_a').is_dir() and (cand / 'cam_b').is_dir():
            return cand
    raise LayoutError(f"{src / SHOT_DIR}: folder not found (SRC must contain "
                      f"prid_2011/multi_shot/cam_a and cam_b)")


def read_splits(path: Path) -> list[dict]:
    """The splits json with person names turned into pids."""
    raw = load_json(path, 'PRID2011 splits json')
    if not isinstance(raw, list):
        raise LayoutError(f"{path}: expected a list of {{'train': [...], 'test': [...]}}")
    conv = []
    for k, s in enumerate(raw):
        if not isinstance(s, dict) or not {'train', 'test'} <= set(s):
            raise LayoutError(f"{path}: split {k} must have 'train' and 'test' lists")
        d = {}
        for part in ('train', 'test'):
            d[part] = []
            for name in s[part]:
                m = PERSON_RE.match(str(name))
                if not m:
                    raise LayoutError(f"{path}: split {k} {part}: {name!r} is not person_NNNN")
                d[part].append(int(m.group(1)))
        conv.append(d)
    pids = {p for s in conv for part in ('train', 'test') for p in s[part]}
    return check_splits(conv, pids, str(path))


def _tracklet(folder: Path, cam: int, pid: int) -> SourceTracklet:
    require_dir(folder, f'PRID2011 person {pid} in {CAMS[cam]} (named by the splits file)')

    def frame_of(name):
        m = FRAME_RE.match(name)
        return int(m.group(1)) if m else None
    return person_tracklet(folder, cam, pid, frame_of, 'NNNN.png',
                           f'{CAMS[cam]}/{person_folder(pid)}')


def parse_prid2011(src: str | Path, splits_file: str | Path | None = None) -> SourceDataset:
    shot = find_shot_dir(Path(src))
    spath = Path(splits_file) if splits_file else DEFAULT_SPLITS
    splits = read_splits(spath)
    pids = sorted({p for s in splits for part in ('train', 'test') for p in s[part]})
    tracklets = [_tracklet(shot / CAMS[c] / person_folder(p), c, p) for p in pids for c in CAMS]
    on_disk = {c: sum(1 for d in (shot / CAMS[c]).iterdir() if PERSON_RE.match(d.name))
               for c in CAMS}
    return SourceDataset('prid2011', str(shot), tracklets, splits,
                         {'num_persons': len(pids), 'splits_file': str(spath),
                          'persons_on_disk': {CAMS[c]: n for c, n in on_disk.items()}})


def prepare_prid2011(src, out, splits_file=None, **kw):
    """Parse SRC (PRID2011 layout) and build OUT/frames.lmdb + OUT/index.json."""
    from .build import build_dataset
    return build_dataset(parse_prid2011(src, splits_file), out, **kw)
