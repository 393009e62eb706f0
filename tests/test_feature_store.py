"""Feature files (reid/evaluation/feature_store.py): round trip, identity checks, plain HDF5."""
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from reid.evaluation.feature_store import (FeatureStore, FeatureStoreError, Identity,
                                           StoredFeatures, file_sha256)
from reid.evaluation.features import chunk_starts, take_tracklets

T = 3


def chunked(rng, tracklets, tids, mode="all"):
    """What FeatureExtractor.extract returns for tids (T = 3, 8 x 2 x 2 pool5): every chunk
    of chunk_starts, pool5 = each tracklet's first."""
    starts = [chunk_starts(tracklets[t].num_frames, T, mode) for t in tids]
    counts = [len(x) for x in starts]
    chunks = rng.gamma(1.0, 2.0, (sum(counts), T, 8, 2, 2)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return {"F": rng.normal(size=(len(tids), 16)), "pool5": chunks[offsets[:-1]],
            "attention": rng.random((len(tids), T, T)).astype(np.float32),
            "pool5_chunks": chunks, "chunk_offsets": offsets,
            "chunk_starts": np.concatenate(starts).astype(np.int64)}


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "index.json").write_text('{"name": "mars", "tracklets": []}')
    for name, text in (("w.caffemodel", "weights"), ("f.prototxt", "features net"),
                       ("m.prototxt", "metric net")):
        (tmp_path / name).write_text(text)
    tracklets = [SimpleNamespace(pid=p, cam=c, num_frames=n, role=r) for p, c, n, r in
                 [(1, 1, 12, "query"), (1, 2, 7, ""), (-1, 3, 30, ""), (2, 1, 6, "query"),
                  (2, 2, 9, "")]]
    dataset = SimpleNamespace(folder=tmp_path / "data", name="mars", split_index=None,
                              tracklets=tracklets)
    nets = {"deploy_features": tmp_path / "f.prototxt", "deploy_metric": tmp_path / "m.prototxt"}
    ident = Identity.of(tmp_path / "w.caffemodel", nets, dataset, chunks="all")
    rng = np.random.default_rng(0)
    tids = np.array([4, 0, 2, 1])
    extracted = chunked(rng, tracklets, tids)
    return SimpleNamespace(tmp=tmp_path, dataset=dataset, nets=nets, ident=ident, tids=tids,
                           extracted=extracted)


def test_round_trip(setup):
    s = setup
    path = FeatureStore.write(s.tmp / "out" / "feats.h5", s.dataset, s.tids, s.extracted,
                              s.ident, info={"run": "runs/all"})
    store = FeatureStore.open(path, s.ident, s.tids)
    assert set(store.features) == set(s.extracted)
    for key, v in s.extracted.items():
        assert store.features[key].dtype == v.dtype
        np.testing.assert_array_equal(store.features[key], v)
    # tids 4, 0, 2, 1 have 9, 12, 30, 7 frames: 3 + 4 + 10 + 3 chunks of 3 frames
    assert s.extracted["chunk_offsets"].tolist() == [0, 3, 7, 17, 20]
    assert store.tids.tolist() == [4, 0, 2, 1]
    assert store.pids.tolist() == [2, 1, -1, 1] and store.cams.tolist() == [2, 1, 3, 2]
    assert store.roles.tolist() == ["", "query", "", ""]
    assert store.identity == s.ident and store.info == {"run": "runs/all"}
    assert not (s.tmp / "out" / "feats.h5.part").exists()


def test_plain_hdf5(setup):
    s = setup
    path = FeatureStore.write(s.tmp / "f.h5", s.dataset, s.tids, s.extracted, s.ident,
                              compression="gzip")
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "reid-features"
        assert f.attrs["weights_sha256"] == file_sha256(s.tmp / "w.caffemodel")
        assert f.attrs["version"] == 2
        assert f["pool5"].shape == (20, 3, 8, 2, 2) and f["pool5"].compression == "gzip"
        assert f["pool5_row"][()].tolist() == [0] * 3 + [1] * 4 + [2] * 10 + [3] * 3
        assert f["pool5_start"][()].tolist() == ([0, 3, 6] + [0, 3, 6, 9]
                                                 + list(range(0, 28, 3)) + [0, 3, 4])
        np.testing.assert_array_equal(f["pool5"][()], s.extracted["pool5_chunks"])
        np.testing.assert_array_equal(f["F"][()], s.extracted["F"])
        assert f["tracklets/tid"][()].tolist() == [4, 0, 2, 1]
        assert [r.decode() for r in f["tracklets/role"][()]] == ["", "query", "", ""]


def test_identity_is_content(setup):
    s = setup
    (s.tmp / "copy.caffemodel").write_bytes((s.tmp / "w.caffemodel").read_bytes())
    assert Identity.of(s.tmp / "copy.caffemodel", s.nets, s.dataset) == s.ident
    (s.tmp / "copy.caffemodel").write_text("other weights")
    other = Identity.of(s.tmp / "copy.caffemodel", s.nets, s.dataset)
    assert other.differences(s.ident) == ["weights"]
    assert Identity.of(s.tmp / "w.caffemodel", s.nets, s.dataset, "first").differences(
        s.ident) == ["chunks"]


@pytest.mark.parametrize("change, word", [
    (dict(weights="0" * 64), "weights"),
    (dict(dataset="1" * 64), "dataset"),
    (dict(nets={"deploy_features": "2" * 64}), "nets"),
    (dict(split=3), "split"),
])
def test_wrong_identity_is_an_error(setup, change, word):
    s = setup
    path = FeatureStore.write(s.tmp / "f.h5", s.dataset, s.tids, s.extracted, s.ident)
    expect = Identity(**dict(vars(s.ident), **change))
    with pytest.raises(FeatureStoreError, match=rf"f.h5: computed from other {word}"):
        FeatureStore.open(path, expect)


def test_bad_files(setup):
    s = setup
    with pytest.raises(FeatureStoreError, match="nope.h5: feature file not found"):
        FeatureStore.open(s.tmp / "nope.h5")
    (s.tmp / "text.h5").write_text("hello")
    with pytest.raises(FeatureStoreError, match="text.h5: not an HDF5 file"):
        FeatureStore.open(s.tmp / "text.h5")
    with h5py.File(s.tmp / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(FeatureStoreError, match="other.h5: not a feature file"):
        FeatureStore.open(s.tmp / "other.h5")
    path = FeatureStore.write(s.tmp / "f.h5", s.dataset, s.tids, s.extracted, s.ident)
    with pytest.raises(FeatureStoreError, match="f.h5: holds 4 other tracklets"):
        FeatureStore.open(path, s.ident, tids=[0, 1, 2, 4])
    with h5py.File(path, "a") as f:
        f.attrs["version"] = 99
    with pytest.raises(FeatureStoreError, match="version 99"):
        FeatureStore.open(path)
    with h5py.File(path, "a") as f:
        f.attrs["version"] = 1
    with pytest.raises(FeatureStoreError, match=r"f.h5: feature file version 1 \(the pool5 "
                       r"of the first chunk only\).*--re-extract"):
        FeatureStore.open(path)
    with pytest.raises(FeatureStoreError, match="'pool5' has 3 rows for 4 tracklets"):
        FeatureStore.write(s.tmp / "g.h5", s.dataset, s.tids,
                           dict(s.extracted, pool5=s.extracted["pool5"][:3]), s.ident)
    with pytest.raises(FeatureStoreError, match="'pool5_chunks' has 19 rows for 20 chunks"):
        FeatureStore.write(s.tmp / "g.h5", s.dataset, s.tids, dict(
            s.extracted, pool5_chunks=s.extracted["pool5_chunks"][:19]), s.ident)
    with pytest.raises(FeatureStoreError, match=r"'chunk_offsets' are not n \+ 1 = 5"):
        FeatureStore.write(s.tmp / "g.h5", s.dataset, s.tids, dict(
            s.extracted, chunk_offsets=np.array([0, 3, 3, 17, 20])), s.ident)
    with pytest.raises(FeatureStoreError, match="lack 'pool5_chunks'"):
        FeatureStore.write(s.tmp / "g.h5", s.dataset, s.tids, {"F": s.extracted["F"]}, s.ident)


@pytest.mark.parametrize("rows", [[0, 0, 0, 2, 2, 3] + [3] * 14,      # tracklet 1 has none
                                  [0, 1, 0] + [1] * 4 + [2] * 10 + [3] * 3,   # not contiguous
                                  [0] * 3 + [1] * 4 + [2] * 10 + [4] * 3])    # no row 4
def test_bad_chunk_rows(setup, rows):
    s = setup
    path = FeatureStore.write(s.tmp / "f.h5", s.dataset, s.tids, s.extracted, s.ident)
    with h5py.File(path, "a") as f:
        f["pool5_row"][...] = rows
    with pytest.raises(FeatureStoreError, match="f.h5: /pool5_row does not give each of the 4"):
        FeatureStore.open(path)


class CountingExtractor:
    def __init__(self, extracted, tids):
        self.extracted, self.tids, self.calls = extracted, list(tids), []

    def extract(self, dataset, tids, mode="all", progress=True):
        self.calls.append(list(tids))
        return take_tracklets(self.extracted, [self.tids.index(t) for t in tids])


def test_stored_features_extract_once(setup):
    s = setup
    ext = CountingExtractor(s.extracted, s.tids)
    made = []

    def stored(**kw):
        return StoredFeatures(s.tmp / "cache.h5", s.tmp / "w.caffemodel", s.nets,
                              lambda: made.append(1) or ext, **kw)
    a = stored().extract(s.dataset, s.tids)
    b = stored().extract(s.dataset, s.tids[::-1])            # rows follow the tids asked
    assert ext.calls == [s.tids.tolist()] and len(made) == 1  # the second never built one
    assert set(a) == set(b) == set(s.extracted)
    for key, v in take_tracklets(a, [3, 2, 1, 0]).items():
        np.testing.assert_array_equal(b[key], v)
    np.testing.assert_array_equal(b["chunk_offsets"], [0, 3, 13, 17, 20])
    with pytest.raises(FeatureStoreError, match="computed from other chunks"):
        stored().extract(s.dataset, s.tids, mode="first")
    stored(re_extract=True).extract(s.dataset, s.tids, mode="first")
    assert len(ext.calls) == 2
    with h5py.File(s.tmp / "cache.h5", "r") as f:
        assert Identity.from_attrs(f.attrs).chunks == "first"


def test_lazy_arrays_and_rows(setup):
    s = setup
    path = FeatureStore.write(s.tmp / "f.h5", s.dataset, s.tids, s.extracted, s.ident)
    store = FeatureStore.open(path, arrays=("F",))
    assert set(store.features) == {"F", "chunk_offsets", "chunk_starts"}
    np.testing.assert_array_equal(store.read_rows("pool5", [19, 0, 19]),
                                  s.extracted["pool5_chunks"][[19, 0, 19]])
    np.testing.assert_array_equal(store.first_pool5([3, 0, 3]),
                                  s.extracted["pool5"][[3, 0, 3]])
    assert store.shape("pool5") == (20, 3, 8, 2, 2)


def test_missing_tracklets_are_added(setup):
    """A second call with more tracklets extracts only those; the chunks of both calls end
    up in one file, each tracklet's own."""
    s = setup
    ext = CountingExtractor(s.extracted, s.tids)
    stored = StoredFeatures(s.tmp / "c.h5", s.tmp / "w.caffemodel", s.nets, lambda: ext)
    stored.extract(s.dataset, s.tids[[2, 0]])
    got = stored.extract(s.dataset, s.tids[[1, 2, 3]])
    assert ext.calls == [[2, 4], [0, 1]]
    for key, v in take_tracklets(s.extracted, [1, 2, 3]).items():
        np.testing.assert_array_equal(got[key], v)
    with h5py.File(s.tmp / "c.h5", "r") as f:
        assert f["tracklets/tid"][()].tolist() == [2, 4, 0, 1]
        assert f["pool5_row"][()].tolist() == [0] * 10 + [1] * 3 + [2] * 4 + [3] * 3
