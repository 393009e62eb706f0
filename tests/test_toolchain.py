"""The toolchain itself: pinned Caffe + patch set, pycaffe on numpy 2, Python layers in the
`caffe` tool, Caffe's own LSTM, native-layer syncing, and set-up's failure modes."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from reid.testing import net_from_prototxt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLCHAIN = os.path.join(ROOT, "toolchain")


def _lock():
    out = {}
    for line in open(os.path.join(TOOLCHAIN, "caffe.lock")):
        if "=" in line and not line.startswith("#"):
            k, v = line.strip().split("=", 1)
            out[k] = v
    return out


def _cache():
    return os.environ.get("REID_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "reid-caffe")


def _pristine_tarball():
    path = os.path.join(_cache(), "downloads", _lock()["CAFFE_ORIG_TARBALL"])
    if not os.path.exists(path):
        pytest.fail("pinned source tarball %s missing: run make setup" % path)
    return path


def _extract(dest):
    os.makedirs(dest, exist_ok=True)
    subprocess.run(["tar", "-xzf", _pristine_tarball(), "-C", str(dest)], check=True)


def test_patch_set_applies_cleanly_to_pinned_source(tmp_path):
    _extract(tmp_path)
    patches = sorted(p for p in os.listdir(os.path.join(TOOLCHAIN, "patches")) if p.endswith(".patch"))
    assert patches, "no patches found"
    for name in patches:
        text = open(os.path.join(TOOLCHAIN, "patches", name)).read()
        assert text.startswith("Reason: "), "%s lacks its one-line reason" % name
        out = subprocess.run(["patch", "-p1", "--forward", "--batch", "-d", str(tmp_path)],
                             input=text, capture_output=True, text=True)
        assert out.returncode == 0, name + ": " + out.stdout + out.stderr
        assert "offset" not in out.stdout and "fuzz" not in out.stdout, name + ": " + out.stdout


def test_pycaffe_imports_with_numpy2_and_patched_io():
    import caffe
    assert int(np.__version__.split(".")[0]) >= 2
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    back = caffe.io.datum_to_array(caffe.io.array_to_datum(arr, label=7))
    np.testing.assert_array_equal(arr, back)


LSTM_NET = """
force_backward: true
input: "x" input_shape { dim: 5 dim: 3 dim: 4 }
input: "cont" input_shape { dim: 5 dim: 3 }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
  recurrent_param { num_output: 7 weight_filler { type: "uniform" min: -0.1 max: 0.1 } } }
"""


def test_caffe_lstm_layer_runs():
    import caffe
    caffe.set_mode_cpu()
    net = net_from_prototxt(LSTM_NET)
    net.blobs["x"].data[...] = np.random.default_rng(0).normal(size=(5, 3, 4))
    net.blobs["cont"].data[...] = 1
    net.blobs["cont"].data[0] = 0
    net.forward()
    assert net.blobs["h"].data.shape == (5, 3, 7)
    assert np.abs(net.blobs["h"].data).max() > 0
    net.blobs["h"].diff[...] = 1
    net.backward()
    assert np.abs(net.blobs["x"].diff).max() > 0
    assert [p.data.shape for p in net.params["lstm"]] == [(28, 4), (28,), (28, 7)]


PY_TRAIN_NET = """
name: "python_layer_in_caffe_tool"
layer { name: "data" type: "DummyData" top: "x" top: "s" top: "target"
  dummy_data_param { shape { dim: 4 dim: 3 dim: 8 } shape { dim: 4 dim: 3 } shape { dim: 4 dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "gaussian" std: 1 }
    data_filler { type: "constant" value: 0.5 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fx"
  inner_product_param { num_output: 24 axis: 1 weight_filler { type: "xavier" } } }
layer { name: "re" type: "Reshape" bottom: "fx" top: "fx3" reshape_param { shape { dim: 4 dim: 3 dim: 8 } } }
layer { name: "att" type: "Python" bottom: "fx3" bottom: "s" top: "y"
  python_param { module: "python_layers.attention_average" layer: "AttentionAverageLayer" } }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "target" top: "loss" }
"""


def _bin_caffe(args, cwd):
    env = dict(os.environ, GLOG_minloglevel="0")
    return subprocess.run([os.path.join(ROOT, "bin", "caffe")] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_python_layer_runs_inside_caffe_tool(tmp_path):
    (tmp_path / "net.prototxt").write_text(PY_TRAIN_NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 3\n'
        'display: 1\nsnapshot: 3\nsnapshot_prefix: "snap"\nsolver_mode: CPU\n')
    out = _bin_caffe(["time", "-model", "net.prototxt", "-iterations", "2"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Average Forward-Backward" in out.stderr
    out = _bin_caffe(["train", "-solver", "solver.prototxt"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "snap_iter_3.caffemodel").exists()
    assert re.search(r"Iteration 2 .*loss = [0-9.]+", out.stderr), out.stderr[-2000:]


def test_python_layer_forward_backward_from_pycaffe():
    import caffe
    caffe.set_mode_cpu()
    net = net_from_prototxt("force_backward: true\n" + PY_TRAIN_NET, phase=caffe.TRAIN)
    net.forward()
    net.backward()
    assert np.isfinite(net.blobs["loss"].data).all()
    assert np.abs(net.blobs["s"].diff).max() > 0  # gradient reached the attention scores


# ---- set-up plumbing ----------------------------------------------------------------

def _fake_root(tmp_path, extra_patch=None):
    """A copy of the project's toolchain and native folders, set up in its own cache."""
    root = tmp_path / "root"
    shutil.copytree(TOOLCHAIN, root / "toolchain")
    shutil.copytree(os.path.join(ROOT, "native"), root / "native")
    if extra_patch:
        (root / "toolchain" / "patches" / "99-broken.patch").write_text(extra_patch)
    env = dict(os.environ, REID_CACHE=str(tmp_path / "cache"), WITH_PYTHON="0", CUDA="0")
    return root, env


def test_setup_rejects_a_patch_that_does_not_apply(tmp_path):
    src = tmp_path / "src"
    _extract(src)
    broken = ("Reason: test.\n--- a/src/caffe/net.cpp\n+++ b/src/caffe/net.cpp\n"
              "@@ -1,1 +1,1 @@\n-this line is not in net.cpp\n+nor this\n")
    root, env = _fake_root(tmp_path, broken)
    env["CAFFE_SRC"] = str(src)
    out = subprocess.run(["bash", str(root / "toolchain" / "setup.sh")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "patch 99-broken.patch does not apply" in out.stderr
    trees = [d for d in os.listdir(tmp_path / "cache") if d.startswith("caffe-")]
    for d in trees:  # nothing that a later run would take for a prepared tree
        assert not os.path.exists(tmp_path / "cache" / d / "src" / ".prepared")


def test_setup_rejects_a_corrupt_download(tmp_path):
    root, env = _fake_root(tmp_path)
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    bad = downloads / _lock()["CAFFE_ORIG_TARBALL"]
    bad.write_bytes(b"not a tarball")
    out = subprocess.run(["bash", str(root / "toolchain" / "setup.sh")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "checksum mismatch" in out.stderr
    assert not bad.exists()  # removed so that the next run downloads again


def test_second_setup_rebuilds_nothing():
    out = subprocess.run(["bash", os.path.join(TOOLCHAIN, "setup.sh")], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Building CXX" not in out.stderr + out.stdout
    assert "Linking" not in out.stderr + out.stdout
