"""The generated nets (paper 3, Table 2; docs/DESIGN.md §1): committed files, shapes, sharing."""
import os

import numpy as np
import pytest

from reid import run
from reid.nets.config import PAPER, SMALL, SMALL_SCHEDULE, VARIANTS, NetConfig, Variant
from reid.nets.generate import all_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_committed_prototxt_equal_the_generator():
    generated = all_files()
    committed = []
    for dirpath, _, names in os.walk(os.path.join(ROOT, "prototxt")):
        committed += [os.path.relpath(os.path.join(dirpath, n), ROOT) for n in names]
    assert sorted(generated) == sorted(committed), \
        "prototxt/ differs from the generator's file list: run tools/generate_nets.py"
    for path, text in generated.items():
        with open(os.path.join(ROOT, path)) as f:
            assert f.read() == text, "%s differs from the generator: run tools/generate_nets.py" % path


def _generate_nets_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "generate_nets", os.path.join(ROOT, "tools", "generate_nets.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generator_options_write_exactly_the_committed_nets(tmp_path, monkeypatch):
    """tools/generate_nets.py --dataset D --variant V --size S --out ... writes, byte for
    byte, the committed files of (D, V, S): one command per run, nothing edited by hand."""
    tool = _generate_nets_tool()
    monkeypatch.chdir(tmp_path)
    for dataset in ("mars", "ilidsvid", "prid2011"):
        for size, sub in (("paper", ""), ("small", "small")):
            for v in VARIANTS:
                folder = os.path.join("prototxt", dataset, sub, v)
                assert tool.main(["--dataset", dataset, "--variant", v, "--size", size,
                                  "--out", folder,
                                  "--work", os.path.join("work", dataset, sub, v)]) == 0
                for name in os.listdir(os.path.join(ROOT, folder)):
                    with open(os.path.join(ROOT, folder, name)) as a, \
                            open(os.path.join(folder, name)) as b:
                        assert a.read() == b.read(), os.path.join(folder, name)
                assert sorted(os.listdir(folder)) == sorted(os.listdir(os.path.join(ROOT, folder)))


def test_a_runs_options_round_trip_and_pick_the_split(tmp_path, monkeypatch):
    """run_argv gives the options that write a run's nets exactly as reid.run.write_nets
    does (what the studies print as the stand-alone command); --split sets the data
    layer's split_index, and a split of MARS or outside 0..9 is refused."""
    from reid.nets.generate import run_argv, run_config
    tool = _generate_nets_tool()
    monkeypatch.chdir(tmp_path)
    cfg, schedule = run_config("ilidsvid", "all", "small", "prep/ilidsvid", 7, iters=30,
                               lr=1e-4, batch_triplets=2, seed=5)
    nets = run.write_nets(cfg, "a", schedule)
    argv = run_argv("ilidsvid", cfg, schedule, "b", os.path.join("b", "snapshots"))
    assert "--work" not in argv and argv[argv.index("--split") + 1] == "7"
    assert tool.main(argv) == 0
    for path in nets.values():
        other = os.path.join("b", os.path.basename(path))
        with open(path) as f, open(other) as g:
            assert f.read().replace("a/", "b/") == g.read(), path
    assert '\\"split_index\\": 7' in open(nets["train_val"]).read()
    assert "split_index" not in open(os.path.join(ROOT, "prototxt", "ilidsvid", "small", "all",
                                                  "train_val.prototxt")).read()
    for bad in (["--dataset", "mars", "--split", "0"], ["--dataset", "prid2011", "--split", "10"]):
        with pytest.raises(SystemExit, match="only iLIDS-VID and PRID2011 have splits"):
            tool.main(bad + ["--out", "c"])
    with pytest.raises(SystemExit):
        tool.main(["--split", "3"])                      # a run's option without --out


def test_every_table2_variant_has_its_nets():
    for dataset in ("mars", "ilidsvid", "prid2011"):
        for sub in ("", "small"):
            for v in VARIANTS.values():
                folder = os.path.join(ROOT, "prototxt", dataset, sub, v.name)
                names = set(os.listdir(folder))
                want = {"train_val.prototxt", "deploy_features.prototxt", "solver.prototxt"}
                if v.metric:
                    want.add("deploy_metric.prototxt")
                assert names == want, folder


def test_small_solvers_are_the_schedule_the_demo_trains_with():
    """SMALL_SCHEDULE is its own stretch to 600 iterations (what the demo and the Table 2
    study write for their default --iters), and the committed small solvers carry it."""
    assert SMALL_SCHEDULE.scaled(SMALL_SCHEDULE.max_iter) == SMALL_SCHEDULE
    assert (SMALL_SCHEDULE.max_iter, SMALL_SCHEDULE.base_lr, SMALL_SCHEDULE.batch_triplets) == \
        (600, 1e-3, 4)
    with open(os.path.join(ROOT, "prototxt", "mars", "small", "all", "solver.prototxt")) as f:
        text = f.read()
    assert "base_lr: 0.001\n" in text and "max_iter: 600\n" in text
    with open(os.path.join(ROOT, "prototxt", "mars", "small", "all", "train_val.prototxt")) as f:
        assert '\\"batch_triplets\\": 4,' in f.read()


def test_variant_label_and_scoring_mode():
    assert [(v.label, v.mode) for v in VARIANTS.values()] == [
        ("CNN", "distance"), ("CNN+RNN", "distance"), ("CNN+TAM", "distance"),
        ("CNN+DIFF", "metric"), ("CNN+SRM", "metric"), ("ALL", "joint")]
    with pytest.raises(ValueError, match="trains nothing"):
        Variant("none", "NONE", "mean", "", False)


def _nets(cfg, tmp_path):
    return run.write_nets(cfg, str(tmp_path), SMALL_SCHEDULE)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("impl", ["native", "python"])
def test_small_nets_run_with_specified_shapes(variant, impl, tiny_mars, tmp_path):
    import caffe
    caffe.set_mode_cpu()
    # Fixed filler seed: with an unlucky draw every mined triplet can already meet the margin,
    # and then no gradient reaches conv1 at all (the property asserted last).
    caffe.set_random_seed(3)
    v = VARIANTS[variant]
    cfg = NetConfig(size=SMALL, variant=v, data_source=tiny_mars, batch_triplets=2,
                    deploy_batch=3, workers=0, impl=impl)
    nets = _nets(cfg, tmp_path)
    T, (C, H, W) = cfg.seq_len, SMALL.pool5_shape()
    feat = caffe.Net(nets["deploy_features"], caffe.TEST)
    feat.blobs["data"].data[...] = np.random.default_rng(0).normal(
        scale=50, size=feat.blobs["data"].data.shape)
    out = feat.forward()
    # metric-only variants: F = mean pool5 over T, what their mining reads (learned)
    D = SMALL.fc if v.temporal == "mean" else SMALL.lstm
    assert out["F"].shape == (3, D if v.triplet else C * H * W)
    assert SMALL.pool5_shape()[1:] == (6, 3)
    assert out["pool5_seq"].shape == (3, T, C, H, W)
    if v.temporal == "tam":
        att = out["attention"]
        assert att.shape == (3, T, T)                 # w_{t,i}: step t, frame i
        np.testing.assert_allclose(att.sum(axis=2), 1, rtol=1e-5)
    else:
        assert "attention" not in out
    if v.metric:
        metric = caffe.Net(nets["deploy_metric"], caffe.TEST)
        for name in ("pool5_a", "pool5_b"):
            metric.blobs[name].data[...] = np.abs(np.random.default_rng(1).normal(
                size=metric.blobs[name].data.shape))
        prob = metric.forward()["prob"]
        assert prob.shape == (3, 2)
        np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
    train = caffe.Net(nets["train_val"], caffe.TRAIN)
    losses = train.forward()
    train.backward()
    for name in ("triplet_loss", "metric_loss"):
        want = (name == "triplet_loss" and v.triplet) or (name == "metric_loss" and v.metric)
        assert (name in losses) == bool(want)
        if want:
            assert np.isfinite(losses[name]).all()
    assert np.abs(train.params["conv1"][0].diff).max() > 0   # gradients reach the trunk


def test_weights_shared_across_steps_and_streams(tiny_mars, tmp_path):
    import caffe
    caffe.set_mode_cpu()
    cfg = NetConfig(size=SMALL, data_source=tiny_mars, batch_triplets=2, workers=0)
    net = caffe.Net(_nets(cfg, tmp_path)["train_val"], caffe.TRAIN)
    # the unrolled TAM and LSTM steps share one set of weights
    for owner, user in (("lstm_x1", "lstm_x6"), ("lstm_hc2", "lstm_hc6"), ("tam_Vh2", "tam_Vh6"),
                        ("tam_a1", "tam_a6")):
        net.params[owner][0].data[...] = 0.25
        assert np.all(net.params[user][0].data == 0.25), (owner, user)
    # the anchor, positive and negative streams share every conv/fc weight: identical
    # frames give identical F whichever stream they pass through
    net.forward()
    data = net.blobs["data"].data
    n = cfg.batch_triplets * cfg.seq_len
    data[n:2 * n] = data[:n]
    net.forward(start="conv1")
    np.testing.assert_array_equal(net.blobs["F_a"].data, net.blobs["F_p"].data)


def test_caffenet_imagenet_weights_initialise_conv_layers(tiny_mars, tmp_path):
    """Conv layers load from a CaffeNet-shaped model; its 4096-wide fc6/fc7 are ignored."""
    import caffe
    from caffe import layers as L
    caffe.set_mode_cpu()
    cfg = NetConfig(size=SMALL, data_source=tiny_mars, batch_triplets=2, workers=0)
    nets = _nets(cfg, tmp_path)
    train = caffe.Net(nets["train_val"], caffe.TRAIN)
    ns = caffe.NetSpec()
    ns.data = L.Input(shape=[dict(dim=[1, 3, SMALL.height, SMALL.width])])
    from reid.nets.trunk import caffenet
    caffenet(ns, ns.data, SMALL, train=False)
    proto = str(ns.to_proto())
    for fc in ("fc6", "fc7"):     # CaffeNet's own names and widths
        proto = proto.replace('"%s_reid"' % fc, '"%s"' % fc)
    proto = proto.replace("num_output: %d" % SMALL.fc, "num_output: 4096")
    (tmp_path / "imagenet.prototxt").write_text(proto)
    imagenet = caffe.Net(str(tmp_path / "imagenet.prototxt"), caffe.TEST)
    imagenet.params["conv1"][0].data[...] = 0.125
    imagenet.save(str(tmp_path / "imagenet.caffemodel"))
    before = train.params["fc6_reid"][0].data.copy()
    train.copy_from(str(tmp_path / "imagenet.caffemodel"))
    assert np.all(train.params["conv1"][0].data == 0.125)
    np.testing.assert_array_equal(train.params["fc6_reid"][0].data, before)


def test_paper_size_all_nets():
    import caffe
    caffe.set_mode_cpu()
    folder = os.path.join(ROOT, "prototxt", "mars", "all")
    feat = caffe.Net(os.path.join(folder, "deploy_features.prototxt"), caffe.TEST)
    assert feat.blobs["data"].data.shape == (8 * 6, 3, 227, 227)
    assert feat.blobs["pool5_seq"].data.shape == (8, 6, 256, 6, 6)
    assert feat.blobs["F"].data.shape == (8, 512)
    assert feat.blobs["attention"].data.shape == (8, 6, 6)
    assert feat.params["fc6_reid"][0].data.shape == (1024, 256 * 6 * 6)
    assert feat.params["fc7_reid"][0].data.shape == (1024, 1024)
    assert PAPER.pool5_shape() == (256, 6, 6)
    metric = caffe.Net(os.path.join(folder, "deploy_metric.prototxt"), caffe.TEST)
    metric.forward()
    assert metric.blobs["prob"].data.shape == (8, 2)
    assert metric.blobs["srm_sweep"].data.shape == (8, 6 * 128, 6, 6, 6)
