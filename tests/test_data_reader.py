"""Reader API (reid.datasets.reader): reads, looping, resizing, prefetch workers."""
import warnings

import cv2
import numpy as np
import pytest

from reid.datasets import Prefetcher, ShortTrackletError, open_dataset
from reid.datasets.mars import prepare_mars
from reid.datasets.synthetic import generate


@pytest.fixture(scope='module')
def mars_ds(tmp_path_factory):
    base = tmp_path_factory.mktemp('reader')
    generate(base / 'src', layout='mars', identities=10, min_len=3, max_len=12, short_prob=0.2,
             height=64, width=32, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        prepare_mars(base / 'src', base / 'out', progress=False)
    return base / 'out'


def _file_frames(ds, tid, size=None):
    """Decode tracklet tid straight from its source JPEGs (independent of the LMDB path)."""
    t = ds.tracklets[tid]
    root = ds.index.meta['source_root']
    imgs = [cv2.imread(f"{root}/{t.source}F{f:03d}.jpg") for f in t.frames]
    if size:
        imgs = [cv2.resize(i, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for i in imgs]
    return np.stack(imgs)


def test_read_shapes_order_and_resize(mars_ds):
    with open_dataset(mars_ds) as ds:
        tid = next(t.tid for t in ds.tracklets if t.num_frames >= 8)
        ref = _file_frames(ds, tid)
        x = ds.read(tid, start=0, length=6)
        assert x.dtype == np.uint8 and x.shape == (6,) + ref.shape[1:]
        np.testing.assert_array_equal(x, ref[:6])                # BGR, frame-number order
        np.testing.assert_array_equal(ds.read(tid, 2, 6), ref[2:8])
        y = ds.read(tid, 1, 6, size=(227, 227))
        assert y.shape == (6, 227, 227, 3)
        np.testing.assert_array_equal(y, _file_frames(ds, tid, (227, 227))[1:7])
        np.testing.assert_array_equal(ds.read_frames(tid, [4, 0, 2]), ref[[4, 0, 2]])
        assert ds.read_raw(tid, 0)[:2] == b'\xff\xd8'


def test_read_loops_short_tracklets_or_raises(mars_ds):
    with open_dataset(mars_ds) as ds:
        t = next(t for t in ds.tracklets if t.num_frames < 6)
        ref = _file_frames(ds, t.tid)
        x = ds.read(t.tid, 0, 6)
        np.testing.assert_array_equal(x, ref[np.arange(6) % t.num_frames])
        start = t.num_frames - 1                                  # wraps around the end
        np.testing.assert_array_equal(ds.read(t.tid, start, 3),
                                      ref[(start + np.arange(3)) % t.num_frames])
        with pytest.raises(ShortTrackletError, match=f"tracklet {t.tid} \\({t.source}\\) has "
                                                      f"{t.num_frames} frames"):
            ds.read(t.tid, 0, 6, loop=False)
        with pytest.raises(IndexError, match=t.source):
            ds.read_frames(t.tid, [t.num_frames])


def test_index_views(mars_ds):
    with open_dataset(mars_ds) as ds:
        assert len(ds.pids) == len(ds.cams) == len(ds) == len(ds.tracklets)
        assert np.array_equal(ds.pids, [t.pid for t in ds.tracklets])
        assert np.array_equal(ds.cams, [t.cam for t in ds.tracklets])
        assert np.array_equal(ds.gallery_idx, [t.tid for t in ds.tracklets if t.split == 'test'])
        assert np.array_equal(ds.query_idx, [t.tid for t in ds.tracklets if t.role == 'query'])
        assert all(ds.tracklets[i].tid == i for i in range(len(ds)))
        with pytest.raises(ValueError, match='single official split'):
            ds.set_split(1)


def test_context_manager_closes(mars_ds):
    with open_dataset(mars_ds) as ds:
        ds.read(0)
    assert ds.store.env is None


@pytest.mark.parametrize('workers', [1, 2])
def test_prefetcher_matches_direct_reads_in_order(mars_ds, workers):
    rng = np.random.default_rng(0)
    with open_dataset(mars_ds) as ds:
        reqs = [(int(rng.integers(len(ds))), int(rng.integers(0, 20)), int(rng.integers(1, 7)))
                for _ in range(40)]
        ref = [ds.read(t, s, n, (40, 24)) for t, s, n in reqs]
    with Prefetcher(mars_ds, workers=workers, size=(40, 24), depth=4) as pf:
        got = list(pf.imap(reqs))
        again = list(pf.imap(reqs[:5]))                           # reusable after a full pass
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(again, ref[:5]):
        np.testing.assert_array_equal(a, b)


def test_prefetcher_consumer_stopping_early_frees_slots(mars_ds):
    with open_dataset(mars_ds) as ds:
        ref = [ds.read(i, 0, 3, (16, 8)) for i in range(6)]
    with Prefetcher(mars_ds, workers=2, size=(16, 8), depth=3) as pf:
        for k, seq in enumerate(pf.imap((i, 0, 3) for i in range(1000))):
            if k == 1:
                break
        assert sorted(pf._free) == [0, 1, 2] and not pf._done
        got = list(pf.imap((i, 0, 3) for i in range(6)))
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


def test_prefetcher_reports_worker_errors(mars_ds):
    with open_dataset(mars_ds) as ds:
        t = next(t for t in ds.tracklets if t.num_frames < 6)
    with Prefetcher(mars_ds, workers=1, size=(16, 8), loop=False) as pf:
        with pytest.raises(RuntimeError, match=f"ShortTrackletError: tracklet {t.tid}"):
            list(pf.imap([(t.tid, 0, 6)]))
