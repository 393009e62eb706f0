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


def _cached_clone():
    """The cached git clone set-up uses where the tarball is unavailable, if at the pin."""
    clone = os.path.join(_cache(), "downloads", "caffe-git")
    head = subprocess.run(["git", "-C", clone, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip() if os.path.isdir(clone) else ""
    return clone if head == _lock()["CAFFE_COMMIT"] else None


def _extract(dest):
    """The pinned pristine source into dest, from whichever form set-up cached: the Debian
    tarball or a git clone at the pinned commit."""
    os.makedirs(dest, exist_ok=True)
    tarball = os.path.join(_cache(), "downloads", _lock()["CAFFE_ORIG_TARBALL"])
    if os.path.exists(tarball):
        subprocess.run(["tar", "-xzf", tarball, "-C", str(dest)], check=True)
    elif _cached_clone():
        archive = subprocess.run(["git", "-C", _cached_clone(), "archive", "--format=tar", "HEAD"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-xf", "-", "-C", str(dest)], input=archive, check=True)
    else:
        pytest.fail("no pinned Caffe source in %s/downloads (tarball or clone): run make setup"
                    % _cache())


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


# ---- where the pinned source comes from (cheap: REID_SETUP_UNTIL=source compiles nothing) ----

FAKE_APT = r"""#!/usr/bin/env bash
# apt-get stand-in: logs "VERB URI" and succeeds only for the URI in FAKE_APT_OK_URI,
# where `source --download-only` "downloads" FAKE_APT_TARBALL into the current folder.
for a in "$@"; do case $a in Dir::Etc::sourcelist=*) list=${a#*=} ;; esac; done
uri=$(awk '{print $3}' "$list")
verb=update; [[ " $* " == *" source "* ]] && verb=source
echo "$verb $uri" >>"$FAKE_APT_LOG"
[[ -n $FAKE_APT_OK_URI && $uri == "$FAKE_APT_OK_URI" ]] || exit 100
[[ $verb == source ]] && cp "$FAKE_APT_TARBALL" .
exit 0
"""


def _offline_root(tmp_path, commit=None):
    """A fake root whose download routes are all under the test's control: apt sources naming
    an unresolvable mirror, an apt-get stand-in, and a git URL that does not exist."""
    root, env = _fake_root(tmp_path)
    lock = (root / "toolchain" / "caffe.lock").read_text()
    lock = re.sub(r"CAFFE_GIT_URL=.*", "CAFFE_GIT_URL=%s" % (tmp_path / "no-such-repo"), lock)
    if commit:
        lock = re.sub(r"CAFFE_COMMIT=.*", "CAFFE_COMMIT=" + commit, lock)
    (root / "toolchain" / "caffe.lock").write_text(lock)
    (tmp_path / "apt" / "sources.list.d").mkdir(parents=True)
    (tmp_path / "apt" / "sources.list").write_text("deb http://deb.mirror.invalid/debian bookworm main\n")
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "apt-get").write_text(FAKE_APT)
    (fakebin / "apt-get").chmod(0o755)
    env.update(APT_ETC=str(tmp_path / "apt"), PATH="%s:%s" % (fakebin, env["PATH"]),
               FAKE_APT_LOG=str(tmp_path / "apt.log"), FAKE_APT_OK_URI="",
               REID_SETUP_UNTIL="source")
    return root, env


def _setup(root, env):
    return subprocess.run(["bash", str(root / "toolchain" / "setup.sh")], env=env,
                          capture_output=True, text=True, timeout=300)


def _prepared_trees(cache):
    return sorted(d for d in os.listdir(cache) if d.startswith("caffe-")
                  and os.path.exists(os.path.join(cache, d, "src", ".prepared")))


def test_source_from_the_archive_then_offline_from_the_cache(tmp_path):
    # the tarball the stand-in serves: the pinned one, re-packed from the cached source
    src = tmp_path / "pristine"
    _extract(src)
    (tmp_path / "served").mkdir()
    tarball = tmp_path / "served" / _lock()["CAFFE_ORIG_TARBALL"]
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(src), "."], check=True)
    root, env = _offline_root(tmp_path)
    lock = (root / "toolchain" / "caffe.lock").read_text()
    sha = subprocess.run(["sha256sum", str(tarball)], capture_output=True, text=True).stdout.split()[0]
    (root / "toolchain" / "caffe.lock").write_text(re.sub(r"CAFFE_ORIG_SHA256=.*", "CAFFE_ORIG_SHA256=" + sha, lock))
    env.update(FAKE_APT_TARBALL=str(tarball), FAKE_APT_OK_URI="http://archive.mirror.invalid/debian")
    # 1. the mirror no longer has the release: the archive beside it (derived) does
    out = _setup(root, env)
    assert out.returncode == 0, out.stderr[-3000:]
    tried = (tmp_path / "apt.log").read_text().split("\n")
    assert tried[0] == "update http://deb.mirror.invalid/debian", tried
    assert "source http://archive.mirror.invalid/debian" in tried, tried
    assert _prepared_trees(tmp_path / "cache")
    # 2. every route fails now (apt-get, the archive, git): the cached tarball suffices
    (tmp_path / "apt.log").write_text("")
    env["FAKE_APT_OK_URI"] = ""
    shutil.rmtree(tmp_path / "cache" / _prepared_trees(tmp_path / "cache")[0])
    out = _setup(root, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "apt.log").read_text() == ""  # nothing was downloaded
    assert len(_prepared_trees(tmp_path / "cache")) == 1


def _git(repo, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", "-C", str(repo)] + list(args), env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_offline_setup_reuses_a_cached_clone_only_at_the_pinned_commit(tmp_path):
    clone = tmp_path / "cache" / "downloads" / "caffe-git"
    _extract(clone)
    _git(clone, "init", "-q")
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "-m", "pinned")
    pinned = _git(clone, "rev-parse", "HEAD")
    root, env = _offline_root(tmp_path, commit=pinned)
    out = _setup(root, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "using the cached git clone" in out.stderr
    assert _prepared_trees(tmp_path / "cache")
    # a clone that moved off the pin is not used, and with every route failing set-up says so
    (clone / "README.md").write_text("moved on\n")
    _git(clone, "commit", "-q", "-am", "later")
    shutil.rmtree(tmp_path / "cache" / _prepared_trees(tmp_path / "cache")[0])
    out = _setup(root, env)
    assert out.returncode != 0
    assert "could not obtain Caffe" in out.stderr and "CAFFE_SRC" in out.stderr
    assert "http://archive.mirror.invalid/debian" in (tmp_path / "apt.log").read_text()
    assert not _prepared_trees(tmp_path / "cache")


def test_caffe_src_tree_is_keyed_by_content_not_path(tmp_path):
    root, env = _offline_root(tmp_path)
    for where in ("a", "b"):  # the same checkout in two places: one patched tree
        _extract(tmp_path / where)
        out = _setup(root, dict(env, CAFFE_SRC=str(tmp_path / where)))
        assert out.returncode == 0, out.stderr[-3000:]
    assert len(_prepared_trees(tmp_path / "cache")) == 1
    with open(tmp_path / "b" / "README.md", "a") as f:  # a different checkout: its own tree
        f.write("edited\n")
    out = _setup(root, dict(env, CAFFE_SRC=str(tmp_path / "b")))
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(_prepared_trees(tmp_path / "cache")) == 2
    assert (tmp_path / "apt.log").exists() is False  # CAFFE_SRC needs no download
