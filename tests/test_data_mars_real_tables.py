"""MARS prep index logic on the REAL evaluation-kit tables (reid/datasets/reference/mars_info).

The kit's name lists are not distributed here, so they are synthesised to match the real
track tables row for row (<pid>C<cam>T<tracklet>F<frame>.jpg); no image is written. This
checks the parser and the index against the real structure: 8,298 train / 12,180 test
tracklets, 625 train identities, 1,980 queries, distractors and junk.
"""
import shutil

import numpy as np
import pytest
import scipy.io

from reid.datasets import LayoutError
from reid.datasets.index import TrackletIndex, frame_key
from reid.datasets.mars import mars_name, parse_mars
from reid.datasets.reference import MARS_KIT_FILES, mars_kit_info_dir

REAL = mars_kit_info_dir()


def _tables():
    tr = scipy.io.loadmat(REAL / 'tracks_train_info.mat')['track_train_info'].astype(np.int64)
    te = scipy.io.loadmat(REAL / 'tracks_test_info.mat')['track_test_info'].astype(np.int64)
    q = scipy.io.loadmat(REAL / 'query_IDX.mat')['query_IDX'].ravel().astype(np.int64)
    return tr, te, q


def _names_for(table, rng):
    """Name list rows matching the table; frame numbers start anywhere, listed shuffled."""
    count, lines = {}, []
    for s, e, pid, cam in table.tolist():
        count[pid] = count.get(pid, 0) + 1
        f0 = int(rng.integers(1, 40))
        frames = rng.permutation(np.arange(f0, f0 + e - s + 1)).tolist()
        lines += [mars_name(pid, cam, count[pid], f) for f in frames]
    return lines


@pytest.fixture(scope='module')
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp('mars_real')
    (root / 'info').mkdir()
    rng = np.random.default_rng(0)
    tr, te, q = _tables()
    for split, table in (('train', tr), ('test', te)):
        (root / 'info' / f'{split}_name.txt').write_text('\n'.join(_names_for(table, rng)) + '\n')
    for f in MARS_KIT_FILES:
        shutil.copy(REAL / f, root / 'info' / f)
    src = parse_mars(root, require_images=False)
    return root, src, TrackletIndex.from_source(src), (tr, te, q)


def test_counts(real):
    _, src, idx, (tr, te, q) = real
    assert len(tr) == 8298 and len(te) == 12180 and q.size == 1980
    assert len(idx.tracklets) == 8298 + 12180
    assert len(idx.indices(split='train')) == 8298
    assert len(idx.indices(split='test')) == 12180
    assert len(set(idx.pids[idx.indices(split='train')])) == 625
    assert len(idx.indices(role='query')) == 1980
    assert idx.total_frames == 509914 + 681089
    assert src.info == {'num_train_tracklets': 8298, 'num_test_tracklets': 12180,
                        'num_queries': 1980}


def test_rows_map_to_tracklets(real):
    _, src, idx, (tr, te, q) = real
    table = np.concatenate([tr, te])
    assert np.array_equal(idx.pids, table[:, 2]) and np.array_equal(idx.cams, table[:, 3])
    assert np.array_equal(idx.num_frames, table[:, 1] - table[:, 0] + 1)
    # query_IDX are 1-based rows of the test table -> tid = n_train + row - 1
    assert np.array_equal(idx.indices(role='query'), np.sort(8298 + q - 1))
    assert (idx.pids[idx.indices(role='query')] > 0).all()
    roles = {t.role for t in idx.tracklets if t.split == 'test'}
    assert roles == {'query', 'gallery'}
    assert {t.role for t in idx.tracklets if t.split == 'train'} == {''}


def test_distractors_and_junk_kept_and_tagged(real):
    _, _, idx, (tr, te, q) = real
    tags = np.array([t.tag for t in idx.tracklets])
    assert (tags == 'distractor').sum() == (te[:, 2] == -1).sum() == 870
    assert (tags == 'junk').sum() == (te[:, 2] == 0).sum() == 3248
    assert set(idx.pids[tags == 'distractor']) == {-1} and set(idx.pids[tags == 'junk']) == {0}
    d = next(t for t in idx.tracklets if t.pid == -1)
    assert d.source.startswith('bbox_test/00-1/00-1C')


def test_frames_sorted_and_keys_contiguous(real):
    root, src, idx, _ = real
    lines = (root / 'info' / 'test_name.txt').read_text().split()
    assert [int(n[-7:-4]) for n in lines[:30]] != sorted(int(n[-7:-4]) for n in lines[:30])
    starts = np.array([t.start for t in idx.tracklets])
    assert starts[0] == 0 and np.array_equal(starts[1:], np.cumsum(idx.num_frames)[:-1])
    for t, st in zip(idx.tracklets[::997], src.tracklets[::997]):
        assert t.frames == sorted(t.frames) and len(set(t.frames)) == t.num_frames
        assert [int(f[-7:-4]) for f in st.files] == t.frames          # files follow frames
        assert st.files[0].startswith(f"{root}/bbox_{t.split}/")
        assert t.keys[0] == frame_key(t.start)
        assert t.keys[-1] == frame_key(t.start + t.num_frames - 1)


def test_index_json_round_trip(real, tmp_path):
    _, _, idx, _ = real
    idx.save(tmp_path / 'index.json')
    back = TrackletIndex.load(tmp_path / 'index.json')
    assert back.name == 'mars' and back.splits is None
    assert back.tracklets == idx.tracklets


def test_name_list_not_matching_table(real, tmp_path):
    root, _, _, (tr, te, q) = real
    dst = tmp_path / 'm'
    shutil.copytree(root / 'info', dst / 'info')
    lines = (dst / 'info' / 'train_name.txt').read_text().split('\n')
    i = int(tr[100, 0])                           # first line of row 101 (1-based)
    lines[i - 1] = lines[i - 1].replace('C%d' % tr[100, 3], 'C%d' % (tr[100, 3] % 6 + 1), 1)
    (dst / 'info' / 'train_name.txt').write_text('\n'.join(lines))
    with pytest.raises(LayoutError, match=rf"tracks_train_info.mat: row 101 .* does not match "
                                          rf"train_name.txt line {i} "):
        parse_mars(dst, require_images=False)
