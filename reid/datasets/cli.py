"""Command-line front ends shared by data_prep/prep_*.py and data_prep/make_synthetic.py."""
from __future__ import annotations

import argparse
import sys
import time
import warnings

from ..argtypes import int_at_least
from ..outputs import OutputError, os_problem
from .layout import LayoutError

DESCRIPTIONS = {
    'mars': "MARS: SRC holds bbox_train/, bbox_test/, info/ (MARS evaluation kit tables)",
    'ilidsvid': "iLIDS-VID: SRC holds i-LIDS-VID/sequences/ and 'train-test people splits/'",
    'prid2011': "PRID2011: SRC holds prid_2011/multi_shot/cam_a, cam_b",
}


def prep_main(dataset: str, argv=None) -> int:
    """Parse SRC in `dataset`'s official layout and write OUT/frames.lmdb + OUT/index.json."""
    ap = argparse.ArgumentParser(
        description=f"Prepare {DESCRIPTIONS[dataset]}. Writes OUT/frames.lmdb (encoded Caffe "
                    f"Datums, label = identity) and OUT/index.json (tracklet index).")
    ap.add_argument('src', help='dataset folder as distributed')
    ap.add_argument('out', help='output folder (replaced atomically when the build completes)')
    if dataset in ('ilidsvid', 'prid2011'):
        ap.add_argument('--splits', default=None, help='split file (default: ' + (
            "SRC/splits_prid2011.json when the source has one, else the standard ten splits "
            "in reid/datasets/reference/splits_prid2011.json)" if dataset == 'prid2011'
            else "SRC/train-test people splits/train_test_splits_ilidsvid.mat)"))
    ap.add_argument('--min-frames', type=int_at_least(1), default=6,
                    help='report tracklets shorter than this (the sequence length T); default 6')
    ap.add_argument('--allow-missing', action='store_true',
                    help='skip (and report) listed images that are absent instead of failing')
    ap.add_argument('--workers', type=int_at_least(1), default=2,
                    help='reader threads (default 2)')
    ap.add_argument('--no-progress', action='store_true')
    a = ap.parse_args(argv)
    from . import ilidsvid, mars, prid2011
    parse = {'mars': lambda: mars.parse_mars(a.src),
             'ilidsvid': lambda: ilidsvid.parse_ilidsvid(a.src, a.splits),
             'prid2011': lambda: prid2011.parse_prid2011(a.src, a.splits)}[dataset]
    from .build import build_dataset
    t0 = time.time()
    try:
        src = parse()
        if src.splits:
            origin = src.info.get('splits_origin') or (
                'given' if a.splits else "the source folder's own splits file")
            print(f"splits: {len(src.splits)} train/test splits from {src.info['splits_file']} "
                  f"({origin})")
        with warnings.catch_warnings():
            # Each skipped frame is in the summary below; don't also print one warning each.
            warnings.simplefilter('ignore')
            report = build_dataset(src, a.out, min_frames=a.min_frames,
                                   allow_missing=a.allow_missing, workers=a.workers,
                                   progress=not a.no_progress)
    except (LayoutError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:                      # e.g. the disk filled up during a commit
        print(f"error: {os_problem(a.out, e)}", file=sys.stderr)
        return 2
    dt = time.time() - t0
    print(report.summary())
    if report.short_tracklets:
        print(f"  {len(report.short_tracklets)} tracklets shorter than {a.min_frames} frames "
              f"(readers loop them), e.g. {report.short_tracklets[:3]}")
    print(f"done in {dt:.1f} s ({report.num_frames / max(dt, 1e-9):.0f} frames/s)")
    return 0


def synthetic_main(argv=None) -> int:
    from dataclasses import fields
    from .synthetic import LAYOUTS, SyntheticConfig, generate
    ap = argparse.ArgumentParser(
        description="Write a synthetic video re-id dataset in an official layout (MARS, "
                    "iLIDS-VID, PRID2011), plus synthetic_meta.json (ground truth).")
    ap.add_argument('--layout', choices=LAYOUTS, required=True)
    ap.add_argument('--out', required=True,
                    help='output folder (replaced if an earlier run of this tool wrote it)')
    ap.add_argument('--replace', action='store_true',
                    help='delete --out first even if this tool did not write it')
    skip = {'layout', 'prid_splits', 'shuffle_name_lists'}
    for f in fields(SyntheticConfig):
        if f.name in skip:
            continue
        typ = float if 'float' in str(f.type) else str if 'str' in str(f.type) else int
        ap.add_argument('--' + f.name.replace('_', '-'), type=typ, default=None,
                        help=f'default {f.default}'
                        + (' (per layout)' if f.default is None else ''))
    ap.add_argument('--shuffle-name-lists', action='store_true',
                    help="MARS: list each tracklet's frames in random order in the name lists")
    ap.add_argument('--prid-splits', help='PRID2011: reuse this splits json (e.g. the real one)')
    a = ap.parse_args(argv)
    kw = {f.name: getattr(a, f.name) for f in fields(SyntheticConfig)
          if f.name not in skip and getattr(a, f.name) is not None}
    if a.prid_splits:
        import json
        with open(a.prid_splits) as fh:
            kw['prid_splits'] = json.load(fh)
    t0 = time.time()
    try:
        meta = generate(a.out, SyntheticConfig(layout=a.layout), replace=a.replace,
                        shuffle_name_lists=a.shuffle_name_lists, **kw)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {os_problem(a.out, e)}", file=sys.stderr)
        return 2
    n = sum(len(t['frames']) for t in meta['tracklets'])
    print(f"{a.out}: {a.layout}, {len(meta['identities'])} identities, "
          f"{len(meta['tracklets'])} tracklets, {n} frames in {time.time() - t0:.1f} s")
    return 0
