"""tools/evaluate.py end to end (docs/DESIGN.md §1.3, §5): a tiny synthetic MARS dataset, the small
ALL net trained for a few iterations by reid.run, then the tool: every output exists,
the table shows the JSON numbers, the JSON numbers are those of a brute-force eq. 2 ranking
computed here, and bad inputs (a caffemodel of another variant, missing files or splits)
fail with a clear message before features are extracted. The two-camera path (iLIDS-VID
layout, 10 splits) runs the same trained net across a synthetic iLIDS-VID, and a fake
extractor with known features checks its probe / gallery wiring per split. Feature files:
a second evaluation with another -k / lambda reads the first one's file (no extraction) and
scores exactly as a fresh extraction; a file of other weights or data is refused.
"""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from reid import run
from reid.datasets import open_dataset
from reid.datasets.ilidsvid import prepare_ilidsvid
from reid.datasets.synthetic import generate
from reid.evaluation import protocols as P
from reid.evaluation import features as features_module
from reid.evaluation import report, rerank
from reid.evaluation.feature_store import StoredFeatures, file_sha256
from reid.evaluation.score import score_run, score_two_camera
from reid.nets import SMALL, VARIANTS, NetConfig, Schedule
from tools import evaluate as tool

ITERS = 8
# base_lr 0.001: at the small schedule's 0.01 with 2 triplets per batch, 8 iterations grew fc7
# to ~1e4 and saturated the TAM's LSTM, so F was the same for every tracklet.
SCHEDULE = Schedule(max_iter=ITERS, stepsize=1000, base_lr=0.001, display=1, snapshot=ITERS)


def train_run(folder, variant, data, iters=ITERS):
    cfg = NetConfig(size=SMALL, variant=VARIANTS[variant], batch_triplets=2, workers=0,
                    deploy_batch=8, data_source=data)
    nets = run.write_nets(cfg, str(folder), replace(SCHEDULE, max_iter=iters, snapshot=iters))
    run.train(nets["solver"], str(folder / "train.log"), iters, progress=False)
    weights = folder / "snapshots" / ("snap_iter_%d.caffemodel" % iters)
    assert weights.is_file()
    return nets, weights


@pytest.fixture(scope="module")
def runs(tiny_mars, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_runs")
    all_nets, all_w = train_run(root / "all", "all", tiny_mars)
    cnn_nets, cnn_w = train_run(root / "cnn", "cnn", tiny_mars, iters=2)
    return {"all": (root / "all", all_nets, all_w), "cnn": (root / "cnn", cnn_nets, cnn_w)}


@pytest.fixture(scope="module")
def tiny_ilidsvid(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_ilidsvid")
    generate(root / "source", layout="ilidsvid", identities=8, seed=5, min_len=6, max_len=14)
    prepare_ilidsvid(root / "source", root / "prepared", progress=False)
    return str(root / "prepared")


def check_table_equals_json(paths, n_results):
    runs = report.load_json(paths["json"])
    table = report.parse_table(Path(paths["table"]).read_text())
    assert len(runs) == 1 and list(table) == [runs[0]["name"]]
    for res in runs[0]["results"]:
        cells = table[runs[0]["name"]][report.group_title(res)]
        want = [report.pct(res["ranks"][str(k)]) for k in (1, 5, 10, 20)]
        if "ranks_std" in res:
            want = ["%s±%s" % (w, report.pct(res["ranks_std"][str(k)]))
                    for w, k in zip(want, (1, 5, 10, 20))]
        else:
            want.append(report.pct(res["mAP"]))
        assert cells == want
    assert len(runs[0]["results"]) == n_results
    return runs[0]


def check_images(paths, kinds):
    for kind in kinds:
        img = cv2.imread(str(paths[kind]))
        assert img is not None and img.shape[0] > 50 and img.shape[1] > 100, kind


def brute_force_eq2(data, nets, weights):
    """Every (query, test) pair scored with S = 1/(1+d) + M and sorted, M of two tracklets the
    mean over their aligned chunk pairs; both MARS protocols."""
    from reid.evaluation.features import FeatureExtractor, MetricScorer
    with open_dataset(data) as ds:
        test, queries = ds.gallery_idx, ds.query_idx
        feats = FeatureExtractor(nets["deploy_features"], str(weights)).extract(
            ds, test, progress=False)
        q = np.searchsorted(test, queries)
        assert np.array_equal(test[q], queries)
        F = feats["F"] / np.linalg.norm(feats["F"], axis=1, keepdims=True)
        d = np.linalg.norm(F[q][:, None] - F[None], axis=2)
        qi, gi = np.meshgrid(np.arange(q.size), np.arange(test.size), indexing="ij")
        scorer = MetricScorer(nets["deploy_metric"], str(weights))
        chunks, off = feats["pool5_chunks"], feats["chunk_offsets"]
        M = np.zeros(d.shape)          # M averaged over aligned chunk pairs, pair by pair
        for i, j in zip(qi.ravel(), gi.ravel()):
            a = chunks[off[q[i]]:off[q[i] + 1]]
            b = chunks[off[j]:off[j + 1]]
            n = max(len(a), len(b))
            M[i, j] = np.mean(scorer(a[np.arange(n) % len(a)], b[np.arange(n) % len(b)]))
        S = 1.0 / (1.0 + d) + M
        order = np.argsort(-S, axis=1, kind="stable")
        return P.evaluate_mars(rerank.Ranking(order, test.size, "joint", 1.0), ds.pids[test],
                               ds.cams[test], q, dataset=ds.name)


def test_mars_all_outputs_and_numbers(runs, tiny_mars, tmp_path):
    run, nets, weights = runs["all"]
    out = tmp_path / "out"
    paths = tool.main(["--dataset", tiny_mars, "--run", str(run), "--out", str(out),
                       "-k", "0", "--show", "3", "--quiet"])
    for kind in ("table", "csv", "json", "cmc", "ranked_lists", "attention"):
        assert Path(paths[kind]).is_file() and Path(paths[kind]).stat().st_size > 0, kind
    check_images(paths, ("cmc", "ranked_lists", "attention"))
    run_json = check_table_equals_json(paths, 2)
    meta = run_json["meta"]
    assert run_json["name"] == "ALL" and meta["mode"] == "joint" and meta["chunks"] == "all"
    assert meta["weights"] == str(weights)            # the newest snapshot, found by the tool
    with open_dataset(tiny_mars) as ds:
        assert meta["k"] == ds.gallery_idx.size       # -k 0: every pair re-scored
    want = {r["protocol"]: r for r in brute_force_eq2(tiny_mars, nets, weights)}
    for res in run_json["results"]:
        ref = want[res["protocol"]]
        assert res["ranks"] == pytest.approx(ref["ranks"])
        assert res["mAP"] == pytest.approx(ref["mAP"])
        assert res["cmc"] == pytest.approx(ref["cmc"])
    # score_run (k = 100 > gallery size: also every pair) agrees
    with open_dataset(tiny_mars) as ds:
        scored = score_run(ds, VARIANTS["all"], nets, weights, progress=False)
        assert scored.features["F"].shape[0] == ds.gallery_idx.size
    for res, ref in zip(run_json["results"], scored.results):
        assert res["protocol"] == ref["protocol"] and res["mAP"] == pytest.approx(ref["mAP"])
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].split(",") == list(report.CSV_FIELDS) and len(rows) > 10


def test_mismatched_caffemodel_is_refused_before_extraction(runs, tiny_mars, tmp_path):
    run = runs["all"][0]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        tool.main(["--dataset", tiny_mars, "--run", str(run), "--weights", str(runs["cnn"][2]),
                   "--out", str(out), "--quiet"])
    msg = str(e.value)
    assert "does not fit the deploy net" in msg and str(runs["cnn"][2]) in msg
    assert "tam_" in msg or "lstm_" in msg                # names the layers it lacks
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case, pattern", [
    ("no_weights", "caffemodel not found"),
    ("no_deploy", "deploy_features.prototxt: not found"),
    ("no_metric", "needs .*deploy_metric.prototxt"),
    ("wrong_variant", "--variant cnn, but"),
    ("no_dataset", "dataset folder not found"),
    ("splits_on_mars", "--splits: mars has one official split"),
    ("not_a_query", "are not queries"),
])
def test_bad_inputs_fail_clearly(runs, tiny_mars, tmp_path, case, pattern):
    src = runs["all"][0]
    run = tmp_path / "run"
    run.mkdir()
    for name in ("deploy_features.prototxt", "deploy_metric.prototxt"):
        shutil.copy(src / name, run / name)
    args = ["--dataset", tiny_mars, "--run", str(run), "--weights", str(runs["all"][2]),
            "--out", str(tmp_path / "out"), "--quiet"]
    if case == "no_weights":
        args[5] = str(tmp_path / "missing.caffemodel")
    elif case == "no_deploy":
        (run / "deploy_features.prototxt").unlink()
    elif case == "no_metric":
        (run / "deploy_metric.prototxt").unlink()
    elif case == "wrong_variant":
        args += ["--variant", "cnn"]
    elif case == "no_dataset":
        args[1] = str(tmp_path / "nothing")
    elif case == "splits_on_mars":
        args += ["--splits", "0,1"]
    elif case == "not_a_query":
        with open_dataset(tiny_mars) as ds:
            train = int(ds.train_idx[0])
        args += ["--show-tids", str(train)]
    with pytest.raises(SystemExit, match=pattern):
        tool.main(args)


def test_two_camera_all_splits(runs, tiny_ilidsvid, tmp_path):
    """The MARS-trained ALL net on a synthetic iLIDS-VID: 10 splits, mean and std."""
    run, nets, weights = runs["all"]
    paths = tool.main(["--dataset", tiny_ilidsvid, "--run", str(run), "--weights", str(weights),
                       "--out", str(tmp_path / "out"), "--quiet"])
    for kind in ("table", "csv", "json", "cmc", "ranked_lists", "attention"):
        assert Path(paths[kind]).is_file(), kind
    check_images(paths, ("cmc", "ranked_lists", "attention"))
    res = check_table_equals_json(paths, 1)["results"][0]
    assert res["protocol"] == P.TWO_CAMERA_SPLITS and res["num_splits"] == 10
    assert [p["split"] for p in res["per_split"]] == list(range(10))
    r1 = np.array([p["ranks"]["1"] for p in res["per_split"]])
    assert res["ranks"]["1"] == pytest.approx(r1.mean())
    assert res["ranks_std"]["1"] == pytest.approx(r1.std())
    with open_dataset(tiny_ilidsvid) as ds:
        for p, split in zip(res["per_split"], ds.splits):
            assert p["num_queries"] == p["num_gallery"] == len(split["test"])
    # the same numbers through the library function the tool calls
    with open_dataset(tiny_ilidsvid) as ds:
        scored = score_run(ds, VARIANTS["all"], nets, weights, progress=False)
    lib, meta = scored.results, scored.meta
    assert lib[0]["ranks"] == pytest.approx(res["ranks"])
    assert lib[0]["mAP"] == pytest.approx(res["mAP"])
    assert meta["weights_per_split"] is False


def test_two_camera_per_split_weights_and_missing_split(runs, tiny_ilidsvid, tmp_path):
    run, _, weights = runs["cnn"]
    for s in (0, 3):
        (tmp_path / ("split%d" % s)).mkdir()
        shutil.copy(weights, tmp_path / ("split%d" % s) / "model.caffemodel")
    template = str(tmp_path / "split{split}" / "model.caffemodel")
    paths = tool.main(["--dataset", tiny_ilidsvid, "--run", str(run), "--weights", template,
                       "--splits", "0,3", "--first-t", "--out", str(tmp_path / "out"),
                       "--quiet"])
    run_json = report.load_json(paths["json"])[0]
    res = run_json["results"][0]
    assert run_json["name"] == "CNN" and run_json["meta"]["mode"] == "distance"
    assert run_json["meta"]["chunks"] == "first" and run_json["meta"]["weights_per_split"]
    assert res["splits"] == [0, 3] and [p["split"] for p in res["per_split"]] == [0, 3]
    assert "attention" not in paths                      # CNN has no TAM
    for s in (0, 3):                                     # one feature file per split
        with h5py.File(tmp_path / ("split%d" % s) / "features" /
                       ("model.ilidsvid.first-t.split%d.h5" % s), "r") as f:
            assert f.attrs["split"] == s and f.attrs["chunks"] == "first"
    with pytest.raises(SystemExit, match=r"split\(s\) \[12\] missing"):
        tool.main(["--dataset", tiny_ilidsvid, "--run", str(run), "--weights", str(weights),
                   "--splits", "0,12", "--quiet", "--out", str(tmp_path / "out2")])
    with pytest.raises(SystemExit, match=r"caffemodel not found for 1 of 2 splits: 5 \(.*"
                                         r"split5/model.caffemodel\); to evaluate the splits "
                                         r"that have one: --splits 0$"):
        tool.main(["--dataset", tiny_ilidsvid, "--run", str(run), "--weights", template,
                   "--splits", "0,5", "--quiet", "--out", str(tmp_path / "out3")])
    with pytest.raises(SystemExit, match=r"for 8 of 10 splits: 1, 2, 4, 5, 6, 7, 8, 9 \("
                                         r"[^)]*split4/model.caffemodel, \.\.\.\); .*"
                                         r"--splits 0,3$"):
        tool.main(["--dataset", tiny_ilidsvid, "--run", str(run), "--weights", template,
                   "--quiet", "--out", str(tmp_path / "out4")])


class FakeExtractor:
    """F = one-hot of the pid (+ a per-camera offset), pool5 = the pid as a volume."""

    def __init__(self, noise=0.0):
        self.noise = noise
        self.calls = []

    def extract(self, dataset, tids, mode="all", progress=True):
        tids = np.asarray(tids)
        self.calls.append(tids)
        pids, cams = dataset.pids[tids], dataset.cams[tids]
        F = np.zeros((tids.size, pids.max() + 1))
        F[np.arange(tids.size), pids] = 1.0
        F[:, 0] = self.noise * cams
        pool5 = pids.reshape(-1, 1, 1, 1, 1).astype(float)
        return {"F": F, "pool5": pool5, "pool5_chunks": pool5,
                "chunk_offsets": np.arange(tids.size + 1),
                "chunk_starts": np.zeros(tids.size, np.int64)}


class FakeScorer:
    """M = 1 for the same person, else 0 (what a perfect SRM would say)."""

    def chunk_metric_fn(self, feats, q_rows, g_rows):
        qa, ga = feats["pool5"][np.asarray(q_rows)], feats["pool5"][np.asarray(g_rows)]
        return lambda qi, gi: (qa[np.asarray(qi)] == ga[np.asarray(gi)]).reshape(-1) * 1.0


class ConstantExtractor(FakeExtractor):
    def extract(self, dataset, tids, mode="all", progress=True):
        out = super().extract(dataset, tids, mode, progress)
        out["F"] = np.ones_like(out["F"])
        return out


def test_two_camera_wiring_with_fake_features(tiny_ilidsvid):
    with open_dataset(tiny_ilidsvid) as ds:
        ext = FakeExtractor(noise=0.1)
        scored = score_two_camera(ds, VARIANTS["cnn"], (ext, None), progress=False)
        res = scored.results[0]
        assert len(ext.calls) == 1                        # one extraction for all splits
        assert res["ranks"]["1"] == 1.0 and res["ranks_std"]["1"] == 0.0 and res["mAP"] == 1.0
        for entry, split in zip(scored.lists, ds.splits):
            assert sorted(ds.pids[entry["query"]]) == sorted(split["test"])
            assert (ds.cams[entry["query"]] == 1).all() and (ds.cams[entry["gallery"]] == 2).all()
            assert np.array_equal(ds.pids[entry["query"]], ds.pids[entry["gallery"]])
            ds.set_split(entry["split"])                  # the roles the index assigns agree
            assert set(ds.query_idx) == set(entry["query"])
            assert set(ds.gallery_idx) == set(entry["gallery"])
        # F says nothing: the joint ranking must come from M, on the right pairs
        scored = score_two_camera(ds, VARIANTS["all"], (ConstantExtractor(), FakeScorer()),
                                  k=0, progress=False)
        assert scored.results[0]["ranks"]["1"] == 1.0
        # without M the constant F leaves ties, broken by gallery column: probe i ranks its
        # match (column i) at i + 1
        scored = score_two_camera(ds, VARIANTS["cnn"], (ConstantExtractor(), None),
                                  splits=[2], progress=False)
        n = len(ds.splits[2]["test"])
        first = np.array(scored.results[0]["per_split"][0]["cmc"])
        assert first[0] == pytest.approx(1.0 / n)
        assert json.dumps(report._jsonable(scored.results[0]))   # JSON-ready


# ---- feature files ------------------------------------------------------------------------
def count_extractions(monkeypatch):
    """Record the tids of every FeatureExtractor.extract call (the trunk running)."""
    calls = []
    real = features_module.FeatureExtractor.extract

    def extract(self, dataset, tids=None, **kw):
        calls.append(np.asarray(tids))
        return real(self, dataset, tids, **kw)
    monkeypatch.setattr(features_module.FeatureExtractor, "extract", extract)
    return calls


def test_feature_file_is_reused_across_k_and_lambda(runs, tiny_mars, tmp_path, monkeypatch):
    run, nets, weights = runs["all"]
    w = tmp_path / "w" / "snap.caffemodel"
    w.parent.mkdir()
    shutil.copy(weights, w)
    calls = count_extractions(monkeypatch)
    base = ["--dataset", tiny_mars, "--run", str(run), "--weights", str(w), "--show", "1",
            "--quiet"]
    first = tool.main(base + ["--out", str(tmp_path / "a"), "-k", "3"])
    h5 = tmp_path / "w" / "features" / "snap.mars.h5"          # the documented default
    assert first["features"] == str(h5) and h5.is_file() and len(calls) == 1
    stamp = h5.stat().st_mtime_ns
    second = tool.main(base + ["--out", str(tmp_path / "b"), "-k", "0", "--lam", "0.5"])
    assert len(calls) == 1 and h5.stat().st_mtime_ns == stamp   # read, not extracted
    fresh_h5 = tmp_path / "fresh.h5"
    fresh = tool.main(base + ["--out", str(tmp_path / "c"), "-k", "0", "--lam", "0.5",
                              "--features", str(fresh_h5)])
    assert len(calls) == 2
    reused, extracted = (report.load_json(p["json"])[0] for p in (second, fresh))
    assert reused["results"] == extracted["results"]            # exactly
    assert reused["meta"]["lambda"] == 0.5
    with open_dataset(tiny_mars) as ds:
        test = ds.gallery_idx
        assert reused["meta"]["k"] == test.size
        assert report.load_json(first["json"])[0]["meta"]["k"] == 3
        # plain h5py: the documented datasets and identity attributes
        with h5py.File(h5, "r") as f, h5py.File(fresh_h5, "r") as g:
            assert f.attrs["format"] == "reid-features" and f.attrs["version"] == 2
            assert f.attrs["weights_sha256"] == file_sha256(w)
            assert f.attrs["net_sha256.deploy_features"] == file_sha256(nets["deploy_features"])
            assert f.attrs["dataset_index_sha256"] == file_sha256(Path(tiny_mars) / "index.json")
            assert f.attrs["split"] == -1 and f.attrs["chunks"] == "all"
            assert f["tracklets/tid"][()].tolist() == test.tolist()
            assert f["tracklets/pid"][()].tolist() == ds.pids[test].tolist()
            assert f["tracklets/camera"][()].tolist() == ds.cams[test].tolist()
            n, T = test.size, f["attention"].shape[-1]
            starts = [features_module.chunk_starts(ds.tracklets[t].num_frames, T)
                      for t in test]
            m = sum(map(len, starts))                    # every chunk F averages, in order
            assert m > n and f["F"].shape[0] == n and f["pool5"].shape[:2] == (m, T)
            assert f["attention"].shape == (n, T, T)
            assert f["pool5_row"][()].tolist() == [i for i, x in enumerate(starts) for _ in x]
            assert f["pool5_start"][()].tolist() == [s for x in starts for s in x]
            for key in ("F", "pool5", "pool5_row", "pool5_start", "attention"):
                np.testing.assert_array_equal(f[key][()], g[key][()])
        # read back, the file is what the extractor returns, key for key (tracklets reordered)
        direct = features_module.FeatureExtractor(nets["deploy_features"], str(w)).extract(
            ds, test[::-1], progress=False)
        stored = StoredFeatures(h5, w, {"deploy_features": nets["deploy_features"]},
                                None).extract(ds, test[::-1])
        assert set(stored) == set(direct)
        for key, v in direct.items():
            np.testing.assert_allclose(stored[key], v, rtol=0, atol=1e-6, err_msg=key)


def perturbed_copy(weights, path):
    """The same layers as ``weights`` with one value changed: other weights that fit."""
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    model.ParseFromString(Path(weights).read_bytes())
    next(layer for layer in model.layer if layer.blobs).blobs[0].data[0] += 1.0
    path.write_bytes(model.SerializeToString())
    return path


def test_feature_file_of_other_weights_or_data_is_refused(runs, tiny_mars, tiny_ilidsvid,
                                                          tmp_path, monkeypatch):
    run, _, weights = runs["all"]
    h5 = tmp_path / "f.h5"
    args = ["--run", str(run), "--features", str(h5), "--show", "0", "--quiet", "-k", "2"]
    tool.main(args + ["--dataset", tiny_mars, "--weights", str(weights),
                      "--out", str(tmp_path / "a")])
    other = perturbed_copy(weights, tmp_path / "other.caffemodel")
    calls = count_extractions(monkeypatch)
    stamp = h5.stat().st_mtime_ns
    with pytest.raises(SystemExit, match=r"f\.h5: computed from other weights than expected"):
        tool.main(args + ["--dataset", tiny_mars, "--weights", str(other),
                          "--out", str(tmp_path / "b")])
    with pytest.raises(SystemExit, match=r"f\.h5: computed from other dataset than expected"):
        tool.main(args + ["--dataset", tiny_ilidsvid, "--weights", str(weights),
                          "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match=r"f\.h5: computed from other chunks"):
        tool.main(args + ["--dataset", tiny_mars, "--weights", str(weights), "--first-t",
                          "--out", str(tmp_path / "d")])
    assert calls == [] and h5.stat().st_mtime_ns == stamp
    assert not (tmp_path / "b").exists()                # refused before any output
    # --re-extract overwrites a feature file, and nothing else
    tool.main(args + ["--dataset", tiny_mars, "--weights", str(other), "--re-extract",
                      "--out", str(tmp_path / "e")])
    assert len(calls) == 1
    with h5py.File(h5, "r") as f:
        assert f.attrs["weights_sha256"] == file_sha256(other)
    notes = tmp_path / "notes.h5"
    notes.write_text("not features")
    with pytest.raises(SystemExit, match=r"notes\.h5: not a feature file"):
        tool.main(["--run", str(run), "--features", str(notes), "--re-extract", "--quiet",
                   "--dataset", tiny_mars, "--weights", str(weights), "--out",
                   str(tmp_path / "f")])
    assert notes.read_text() == "not features" and len(calls) == 1


class SeededExtractor(FakeExtractor):
    """F random but fixed per tracklet id, so rows that go to the wrong tracklet show."""

    def extract(self, dataset, tids, mode="all", progress=True):
        out = super().extract(dataset, tids, mode, progress)
        out["F"] = np.stack([np.random.default_rng(int(t)).normal(size=8) for t in tids])
        return out


def test_two_camera_feature_file_grows_with_the_splits(tiny_ilidsvid, tmp_path):
    """Shared weights: one file for all splits; a run over more splits extracts only the
    tracklets the file lacks, and every run scores as the extractor itself does."""
    (tmp_path / "w.caffemodel").write_text("weights")
    (tmp_path / "f.prototxt").write_text("net")
    fake = SeededExtractor()

    def stored():
        return StoredFeatures(tmp_path / "f.h5", tmp_path / "w.caffemodel",
                              {"deploy_features": tmp_path / "f.prototxt"}, lambda: fake)
    with open_dataset(tiny_ilidsvid) as ds:
        variant = VARIANTS["cnn"]
        one = score_two_camera(ds, variant, (stored(), None), splits=[4], progress=False)
        every = score_two_camera(ds, variant, (stored(), None), progress=False)
        again = score_two_camera(ds, variant, (stored(), None), progress=False)
        direct = score_two_camera(ds, variant, (SeededExtractor(), None), progress=False)
        assert len(fake.calls) == 2 and np.intersect1d(*fake.calls).size == 0
        assert np.array_equal(np.sort(np.concatenate(fake.calls)), every.tids)
    assert one.results[0]["per_split"][0]["cmc"] == direct.results[0]["per_split"][4]["cmc"]
    for res in (every, again):
        for a, b in zip(res.results[0]["per_split"], direct.results[0]["per_split"]):
            assert a["cmc"] == b["cmc"] and a["mAP"] == b["mAP"]


def test_default_output_is_beside_the_weights_and_the_title_shows_the_template():
    """Without --out nothing is written into the run folder (e.g. the committed prototxt/):
    eval_<dataset>_<weights> goes beside the caffemodel, or beside the split folders."""
    from pathlib import Path
    assert tool.default_out("work/mars/all/snap_iter_5.caffemodel", "mars") == \
        Path("work/mars/all/eval_mars_snap_iter_5")
    template = "out/t3/ilidsvid/split{split}/snapshots/snap_iter_150.caffemodel"
    assert tool.default_out(template, "ilidsvid") == Path("out/t3/ilidsvid/eval_ilidsvid_"
                                                          "snap_iter_150")
    assert tool.weights_title(template) == "split{split}/snapshots/snap_iter_150.caffemodel"
    assert tool.weights_title("work/mars/all/snap_iter_5.caffemodel") == "snap_iter_5.caffemodel"


@pytest.mark.parametrize("option, value, message", [
    ("--lam", "nan", "nan is not a finite number"), ("--lam", "inf", "inf is not a finite"),
    ("-k", "-5", "-5 is below 0 (0 scores every pair)"), ("--top", "0", "0 is below 1"),
    ("--show", "-1", "-1 is below 0")])
def test_evaluate_refuses_meaningless_numbers(option, value, message, capsys):
    with pytest.raises(SystemExit) as e:
        tool.parse_args(["--dataset", "d", "--run", "r", option, value])
    assert e.value.code == 2 and message in capsys.readouterr().err
