"""Prep tools on small generated datasets of each official layout (docs/DESIGN.md §4).

Checks counts, identities, cameras, splits, query/gallery roles and frame order of the
prepared LMDB + index against the ground truth the generator wrote (synthetic_meta.json),
and that each stored Datum holds the source file's bytes unchanged.
"""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from reid.datasets import open_dataset
from reid.datasets import ilidsvid, mars, prid2011
from reid.datasets.index import frame_key
from reid.datasets.lmdb_store import parse_datum
from reid.datasets.reference import prid2011_splits_path
from reid.datasets.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
REAL_PRID_SPLITS = prid2011_splits_path()
SMALL = dict(min_len=3, max_len=9, height=64, width=32)


def _frame_path(src: Path, name: str, t) -> Path:
    """Where frame number f of index tracklet t lives in the source layout."""
    if name == 'mars':
        return [src / (t.source + 'F%03d.jpg' % f) for f in t.frames]
    if name == 'ilidsvid':
        return [src / ilidsvid.SEQ_DIR / t.source / ilidsvid.frame_name(t.cam, t.pid, f)
                for f in t.frames]
    return [src / prid2011.SHOT_DIR / t.source / prid2011.frame_name(f) for f in t.frames]


def _prep(layout, src, out, **kw):
    fn = {'mars': mars.prepare_mars, 'ilidsvid': ilidsvid.prepare_ilidsvid,
          'prid2011': prid2011.prepare_prid2011}[layout]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')          # short-tracklet notices
        return fn(src, out, progress=False, **kw)


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    """{layout: (src, out, meta)} for the three layouts, small but complete."""
    base = tmp_path_factory.mktemp('prep')
    res = {}
    for layout, kw in (('mars', dict(identities=16, shuffle_name_lists=True)),
                       ('ilidsvid', dict(identities=14)), ('prid2011', dict(identities=14))):
        src, out = base / f'{layout}_src', base / f'{layout}_out'
        meta = generate(src, layout=layout, seed=7, **SMALL, **kw)
        extra = {'splits_file': src / 'splits_prid2011.json'} if layout == 'prid2011' else {}
        _prep(layout, src, out, **extra)
        res[layout] = (src, out, meta)
    return res


def _check_frames_and_bytes(src, ds, meta):
    """Every tracklet: frames ascending, files = generator's files, LMDB bytes = file bytes."""
    by_files = {tuple(r['files']): r for r in meta['tracklets']}
    seen = set()
    for t in ds.tracklets:
        paths = _frame_path(src, ds.name, t)
        rel = tuple(str(p.relative_to(src)) for p in paths)
        assert rel in by_files, f"{t.source}: frames {t.frames} not a generated tracklet"
        rec = by_files[rel]
        seen.add(rel)
        assert t.frames == sorted(t.frames) == rec['frames']
        assert (t.pid, t.cam, t.num_frames) == (rec['pid'], rec['cam'], len(rec['frames']))
        raws = ds.store.get_range(t.start, t.num_frames)          # one cursor range
        for k, (raw, p) in enumerate(zip(raws, paths)):
            d = parse_datum(raw)
            assert d.encoded and d.label == t.pid
            assert d.data == p.read_bytes(), f"{t.source} frame {k} differs from {p}"
            assert (d.channels, d.height, d.width) == (3,) + tuple(
                (meta['config']['height'], meta['config']['width']))
        assert t.keys == [frame_key(t.start + i) for i in range(t.num_frames)]
    return seen


def test_mars_prep_matches_generator(prepared):
    src, out, meta = prepared['mars']
    with open_dataset(out) as ds:
        assert ds.name == 'mars' and ds.splits is None
        recs = meta['tracklets']
        assert len(ds) == len(recs)
        seen = _check_frames_and_bytes(src, ds, meta)
        assert len(seen) == len(recs)
        # Train tracklets first, in table order; splits as generated.
        n_train = sum(r['split'] == 'train' for r in recs)
        n_test = len(recs) - n_train
        assert [t.split for t in ds.tracklets] == ['train'] * n_train + ['test'] * n_test
        assert set(ds.pids[ds.train_idx]) == set(meta['train_pids'])
        assert set(ds.pids[ds.gallery_idx]) == set(meta['test_pids']) | {-1, 0}
        # Official gallery = every test tracklet, queries included.
        assert set(ds.query_idx) <= set(ds.gallery_idx)
        assert len(ds.gallery_idx) == len(recs) - n_train
        assert len(ds.query_idx) == meta['num_queries']
        q_gen = {tuple(r['files']) for r in recs if r.get('query')}
        q_got = {tuple(str(p.relative_to(src)) for p in _frame_path(src, 'mars', ds.tracklets[i]))
                 for i in ds.query_idx}
        assert q_got == q_gen
        # Distractors / junk kept and tagged.
        tags = {(t.pid, t.tag) for t in ds.tracklets if t.pid <= 0}
        assert tags == {(-1, 'distractor'), (0, 'junk')}
        assert sum(t.pid == -1 for t in ds.tracklets) == meta['config']['distractors']
        assert sum(t.pid == 0 for t in ds.tracklets) == meta['config']['junk']
        assert {t.cam for t in ds.tracklets} <= set(range(1, 7))


def test_mars_frame_order_is_by_number_not_list_order(prepared):
    """The generator shuffled each tracklet's rows in the name lists; prep must sort them."""
    src, out, _ = prepared['mars']
    lines = (src / 'info' / 'train_name.txt').read_text().split()
    frames = [mars.parse_mars_name(n)[3] for n in lines]
    assert frames != sorted(frames)              # the lists really are out of order
    with open_dataset(out) as ds:
        assert all(t.frames == sorted(t.frames) for t in ds.tracklets)


@pytest.mark.parametrize('layout', ['ilidsvid', 'prid2011'])
def test_two_camera_prep_matches_generator(prepared, layout):
    src, out, meta = prepared[layout]
    with open_dataset(out) as ds:
        assert ds.name == layout
        used = meta['pids'] if layout == 'ilidsvid' else meta['used_pids']
        assert len(ds) == 2 * len(used)
        assert sorted(set(ds.pids)) == sorted(used)
        assert list(ds.cams) == [1, 2] * len(used)
        _check_frames_and_bytes(src, ds, meta)
        # All ten splits, as generated (iLIDS-VID: first half of each ls_set row = test).
        assert len(ds.splits) == 10
        for k, s in enumerate(meta['splits']):
            assert sorted(ds.splits[k]['test']) == sorted(s['test'])
            assert sorted(ds.splits[k]['train']) == sorted(s['train'])
        # Roles follow the current split: cam 1 probe, cam 2 gallery, train persons no role.
        for k in (0, 9):
            ds.set_split(k)
            test = set(ds.splits[k]['test'])
            assert set(ds.pids[ds.query_idx]) == test == set(ds.pids[ds.gallery_idx])
            assert set(ds.cams[ds.query_idx]) == {1} and set(ds.cams[ds.gallery_idx]) == {2}
            assert set(ds.pids[ds.train_idx]) == set(ds.splits[k]['train'])


def test_ilidsvid_split_file_semantics(prepared):
    """ls_set rows index the sorted person folders, 1-based; first half is the test set."""
    import scipy.io
    src, out, meta = prepared['ilidsvid']
    ls = scipy.io.loadmat(src / ilidsvid.SPLITS_FILE)['ls_set'].astype(int)
    folders = sorted(os.listdir(src / ilidsvid.SEQ_DIR / 'cam1'))
    with open_dataset(out, split=4) as ds:
        n = len(folders) // 2
        assert ds.split_index == 4
        assert ds.splits[4]['test'] == [int(folders[i - 1][6:]) for i in ls[4, :n]]
        assert set(ds.pids[ds.query_idx]) == {int(folders[i - 1][6:]) for i in ls[4, :n]}


def test_prid_with_the_real_splits_file(tmp_path):
    """200 generated persons + the distributed splits: exactly the 178 persons are indexed."""
    splits = json.loads(REAL_PRID_SPLITS.read_text())
    src = tmp_path / 'src'
    generate(src, layout='prid2011', identities=200, extra_persons=2, prid_splits=splits,
             min_len=2, max_len=3, height=32, width=16, short_prob=0, seed=1)
    # CLI with its default splits file (reid/datasets/reference/splits_prid2011.json).
    r = subprocess.run([sys.executable, str(ROOT / 'data_prep' / 'prep_prid2011.py'), str(src),
                        str(tmp_path / 'out'), '--no-progress'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '356 tracklets' in r.stdout
    with open_dataset(tmp_path / 'out') as ds:
        persons = {int(p[7:]) for p in splits[0]['train'] + splits[0]['test']}
        assert len(persons) == 178 and set(ds.pids) == persons
        assert len(ds) == 356
        for k in range(10):
            assert ds.splits[k]['test'] == [int(p[7:]) for p in splits[k]['test']]
            assert len(ds.splits[k]['train']) == len(ds.splits[k]['test']) == 89
        assert 6 not in set(ds.pids)            # person_0006 is not in the protocol
        assert ds.index.meta['persons_on_disk'] == {'cam_a': 202, 'cam_b': 204}


def test_prid_defaults_to_the_sources_splits_file(tmp_path):
    """Without --splits, a source that ships splits_prid2011.json (as the synthetic one does)
    is prepared with its own splits, and the tool says which file it used; the standard
    file, given explicitly, names the first person it lacks and the splits file."""
    src = tmp_path / 'src'
    meta = generate(src, layout='prid2011', identities=12, seed=2, **SMALL)
    prep = [sys.executable, str(ROOT / 'data_prep' / 'prep_prid2011.py'), str(src)]
    r = subprocess.run(prep + [str(tmp_path / 'out'), '--no-progress'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (f"splits: 10 train/test splits from {src / 'splits_prid2011.json'} "
            "(the source folder's own splits file)") in r.stdout
    with open_dataset(tmp_path / 'out') as ds:
        for k, s in enumerate(meta['splits']):
            assert ds.splits[k]['test'] == s['test'] and ds.splits[k]['train'] == s['train']
    r = subprocess.run(prep + [str(tmp_path / 'std'), '--splits', str(REAL_PRID_SPLITS)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert 'person folders named by the splits file' in r.stderr
    assert str(REAL_PRID_SPLITS) in r.stderr and 'cam_a/person_0016' in r.stderr


def test_cli_mars_and_index_file(prepared, tmp_path):
    """prep_mars.py SRC OUT: exit 0, a summary line, index.json beside frames.lmdb."""
    src, out, meta = prepared['mars']
    r = subprocess.run([sys.executable, str(ROOT / 'data_prep' / 'prep_mars.py'), str(src),
                        str(tmp_path / 'o')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{len(meta['tracklets'])} tracklets" in r.stdout
    assert 'prep mars' in r.stderr                               # tqdm progress bar
    assert sorted(p.name for p in (tmp_path / 'o').iterdir() if not p.name.startswith('.')) == \
        ['frames.lmdb', 'index.json']
    idx = json.loads((tmp_path / 'o' / 'index.json').read_text())
    assert idx['name'] == 'mars' and len(idx['tracklets']) == len(meta['tracklets'])
    t0 = idx['tracklets'][0]
    assert set(t0) >= {'tid', 'pid', 'cam', 'num_frames', 'start', 'split', 'role', 'tag', 'frames'}
    # Contiguous keys: tracklet k+1 starts where tracklet k ends.
    starts = np.array([t['start'] for t in idx['tracklets']])
    lens = np.array([t['num_frames'] for t in idx['tracklets']])
    assert starts[0] == 0 and np.array_equal(starts[1:], np.cumsum(lens)[:-1])
    assert idx['num_frames'] == lens.sum()


def test_make_synthetic_cli(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / 'data_prep' / 'make_synthetic.py'),
                        '--layout', 'ilidsvid', '--out', str(tmp_path / 's'), '--identities', '4',
                        '--seed', '3', '--min-len', '2', '--max-len', '3', '--height', '32',
                        '--width', '16'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    src = ilidsvid.parse_ilidsvid(tmp_path / 's')
    assert len(src.tracklets) == 8 and len(src.splits) == 10
