"""MARS layout parser (docs/DESIGN.md §4; MARS evaluation kit, folder info/).

    SRC/bbox_train/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg      e.g. 0001C1T0001F001.jpg
    SRC/bbox_test/...                                             pid -1 -> folder '00-1'
    SRC/info/train_name.txt, test_name.txt                        one image name per line
    SRC/info/tracks_train_info.mat (track_train_info), tracks_test_info.mat (track_test_info)
        rows [start, end, pid, cam]: 1-based inclusive row ranges of the name lists
    SRC/info/query_IDX.mat (query_IDX): 1-based rows of the test table (the 1,980 queries)

Tracklets are indexed train rows first, then test rows, in table order, so
tid = row - 1 (train) and tid = n_train + row - 1 (test). Official protocol: every test
tracklet is in the gallery (queries included); pid -1 are distractors, pid 0 junk boxes,
both kept and tagged.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .layout import (LayoutError, SourceDataset, SourceTracklet, load_mat_variable, require_dir,
                     require_file)

NAME_RE = re.compile(r'^(00-1|\d{4})C(\d+)T(\d+)F(\d+)\.jpg$')
_NAME_RE_MULTI = re.compile(r'^(00-1|\d{4})C(\d+)T(\d+)F(\d+)\.jpg\r?$', re.MULTILINE)

TABLES = {'train': ('train_name.txt', 'tracks_train_info.mat', 'track_train_info'),
          'test': ('test_name.txt', 'tracks_test_info.mat', 'track_test_info')}
QUERY = ('query_IDX.mat', 'query_IDX')


def mars_folder(pid: int) -> str:
    return '00-1' if pid == -1 else '%04d' % pid


def mars_name(pid: int, cam: int, tracklet: int, frame: int) -> str:
    """The official image name, e.g. mars_name(1, 1, 1, 1) == '0001C1T0001F001.jpg'."""
    return '%sC%dT%04dF%03d.jpg' % (mars_folder(pid), cam, tracklet, frame)


def parse_mars_name(name: str) -> tuple[int, int, int, int]:
    """(pid, cam, tracklet, frame) of an image name; LayoutError if it is not MARS-style."""
    m = NAME_RE.match(name)
    if not m:
        raise LayoutError(f"{name!r} is not a MARS image name <pid>C<cam>T<tracklet>F<frame>.jpg")
    p, c, t, f = m.groups()
    return (-1 if p == '00-1' else int(p)), int(c), int(t), int(f)


def read_name_list(path: Path) -> dict[str, np.ndarray | list]:
    """Parse a name list into arrays (pid, cam, tracklet, frame) plus the names themselves."""
    require_file(path, 'MARS name list')
    try:
        text = path.read_text(encoding='ascii')
    except UnicodeDecodeError as e:
        raise LayoutError(f"{path}: not an ASCII name list ({e})") from e
    lines = text.split('\n')
    while lines and lines[-1].strip() == '':
        lines.pop()
    groups = _NAME_RE_MULTI.findall(text)           # C speed for ~680k names
    if len(groups) != len(lines):
        for i, line in enumerate(lines):
            if not NAME_RE.match(line.rstrip('\r')):
                raise LayoutError(f"{path}, line {i + 1}: {line!r} is not a MARS image name "
                                  f"<pid>C<cam>T<tracklet>F<frame>.jpg")
    if not lines:
        raise LayoutError(f"{path}: empty name list")
    pid = np.array([-1 if g[0] == '00-1' else int(g[0]) for g in groups], dtype=np.int64)
    cam, trk, frame = (np.array([int(g[k]) for g in groups], dtype=np.int64) for k in (1, 2, 3))
    return {'names': [ln.rstrip('\r') for ln in lines], 'pid': pid, 'cam': cam, 'trk': trk,
            'frame': frame}


def read_track_table(path: Path, variable: str, num_names: int, list_path: Path) -> np.ndarray:
    """Validate a track table: n x 4 integer rows [start, end, pid, cam] inside the name list."""
    t = load_mat_variable(path, variable)
    if t.ndim != 2 or t.shape[1] != 4:
        raise LayoutError(f"{path}: '{variable}' must be n x 4 [start, end, pid, cam], "
                          f"got shape {t.shape}")
    s, e = t[:, 0], t[:, 1]
    bad = np.flatnonzero((s < 1) | (e < s) | (e > num_names) | (t[:, 3] < 1) | (t[:, 2] < -1))
    if bad.size:
        r = bad[0]
        raise LayoutError(f"{path}: row {r + 1} {t[r].tolist()} is invalid (rows must satisfy "
                          f"1 <= start <= end <= {num_names} = lines of {list_path.name}, "
                          f"cam >= 1, pid >= -1)")
    order = np.argsort(s, kind='stable')
    overlap = np.flatnonzero(s[order][1:] <= e[order][:-1])
    if overlap.size:
        a, b = order[overlap[0]], order[overlap[0] + 1]
        raise LayoutError(f"{path}: rows {a + 1} and {b + 1} overlap in {list_path.name}")
    return t


def parse_mars(src: str | Path, require_images: bool = True) -> SourceDataset:
    """Parse the MARS layout at `src` (no image is opened; build.py reads them).

    require_images=False parses the info/ tables alone (used to test the index logic on
    the real tables without the images).
    """
    root = Path(src)
    require_dir(root, 'MARS root (expected bbox_train/, bbox_test/, info/)')
    info = require_dir(root / 'info', 'MARS info/ folder of the evaluation kit')
    tracklets: list[SourceTracklet] = []
    counts = {}
    for split, (list_name, mat_name, var) in TABLES.items():
        if require_images:
            require_dir(root / f'bbox_{split}', f'MARS {split} images')
        names = read_name_list(info / list_name)
        table = read_track_table(info / mat_name, var, len(names['names']), info / list_name)
        tracklets += _tracklets_of(root, split, names, table, info / list_name, info / mat_name)
        counts[split] = len(table)
    qpath = info / QUERY[0]
    q = load_mat_variable(qpath, QUERY[1]).ravel()
    bad = q[(q < 1) | (q > counts['test'])]
    if bad.size:
        raise LayoutError(f"{qpath}: query row {int(bad[0])} outside 1..{counts['test']} "
                          f"(rows of {TABLES['test'][1]})")
    if np.unique(q).size != q.size:
        raise LayoutError(f"{qpath}: a query row is listed twice")
    for r in q:
        tracklets[counts['train'] + int(r) - 1].role = 'query'
    return SourceDataset('mars', str(root), tracklets, None,
                         {'num_train_tracklets': counts['train'],
                          'num_test_tracklets': counts['test'], 'num_queries': int(q.size)})


def _tracklets_of(root: Path, split: str, names: dict, table: np.ndarray, list_path: Path,
                  mat_path: Path) -> list[SourceTracklet]:
    out = []
    folder = root / f'bbox_{split}'
    role = 'gallery' if split == 'test' else ''
    for r, (s, e, pid, cam) in enumerate(table.tolist()):
        sl = slice(s - 1, e)
        p, c, k = names['pid'][sl], names['cam'][sl], names['trk'][sl]
        if (p != pid).any() or (c != cam).any() or (k != k[0]).any():
            i = s - 1 + int(np.flatnonzero((p != pid) | (c != cam) | (k != k[0]))[0])
            raise LayoutError(f"{mat_path}: row {r + 1} (pid {pid}, cam {cam}, lines {s}-{e}) "
                              f"does not match {list_path.name} line {i + 1} "
                              f"{names['names'][i]!r}")
        fr = names['frame'][sl]
        order = np.argsort(fr, kind='stable')       # always by frame number, never list order
        fr = fr[order]
        dup = np.flatnonzero(fr[1:] == fr[:-1])
        if dup.size:
            raise LayoutError(f"{list_path}: lines {s}-{e} list frame {int(fr[dup[0]])} twice")
        nm = [names['names'][s - 1 + i] for i in order.tolist()]
        sub = nm[0][:4]
        prefix = f'{folder}/{sub}/'                 # str concat: pathlib is 10x slower here
        out.append(SourceTracklet(
            pid=pid, cam=cam, files=[prefix + n for n in nm], frames=fr.tolist(),
            source=f'bbox_{split}/{sub}/{nm[0][:nm[0].index("F")]}', split=split, role=role,
            tag={-1: 'distractor', 0: 'junk'}.get(pid, '')))
    return out


def prepare_mars(src, out, **kw):
    """Parse SRC (MARS layout) and build OUT/frames.lmdb + OUT/index.json."""
    from .build import build_dataset
    return build_dataset(parse_mars(src), out, **kw)
