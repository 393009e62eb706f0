"""Feature files (reid/evaluation/feature_store.py): round trip, identity checks, plain HDF5."""
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from reid.evaluation.feature_store import (FeatureStore, FeatureStoreError, Identity,
                                           StoredFeatures, file_sha256)


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
    extracted = {"F": rng.normal(size=(4, 16)),
                 "pool5": rng.gamma(1.0, 2.0, (4, 3, 8, 2, 2)).astype(np.float32),
                 "attention": rng.random((4, 3, 3)).astype(np.float32)}
    return SimpleNamespace(tmp=tmp_path, dataset=dataset, nets=nets, ident=ident, tids=tids,
                           extracted=extracted)


def test_round_trip(setup):
    s = setup
    path = FeatureStore.write(s.tmp / "out" / "feats.h5", s.dataset, s.tids, s.extracted,
                              s.ident, info={"run": "runs/all"})
    store = FeatureStore.open(path, s.ident, s.tids)
    for key, v in s.extracted.items():
        assert store.features[key].dtype == v.dtype
        np.testing.assert_array_equal(store.features[key], v)
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
        assert f["pool5"].shape == (4, 3, 8, 2, 2) and f["pool5"].compression == "gzip"
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
    with pytest.raises(FeatureStoreError, match="'pool5' has 3 rows for 4 tracklets"):
        FeatureStore.write(s.tmp / "g.h5", s.dataset, s.tids,
                           dict(s.extracted, pool5=s.extracted["pool5"][:3]), s.ident)
    with pytest.raises(FeatureStoreError, match="lack 'pool5'"):
        FeatureStore.write(s.tmp / "g.h5", s.dataset, s.tids, {"F": s.extracted["F"]}, s.ident)


class CountingExtractor:
    def __init__(self, extracted, tids):
        self.extracted, self.tids, self.calls = extracted, list(tids), []

    def extract(self, dataset, tids, mode="all", progress=True):
        self.calls.append(list(tids))
        rows = [self.tids.index(t) for t in tids]
        return {k: v[rows] for k, v in self.extracted.items()}


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
    for key in s.extracted:
        np.testing.assert_array_equal(b[key], a[key][::-1])
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
    assert set(store.features) == {"F"}
    np.testing.assert_array_equal(store.read_rows("pool5", [3, 0, 3]),
                                  s.extracted["pool5"][[3, 0, 3]])
    assert store.shape("pool5") == (4, 3, 8, 2, 2)
