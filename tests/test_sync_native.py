"""toolchain/sync_native.py: native layers and proto fragments merged into a Caffe tree."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNC = os.path.join(ROOT, "toolchain", "sync_native.py")
ORIG = """syntax = "proto2";
message LayerParameter {
  optional string name = 1;
  optional ClipParameter clip_param = 148;
}
message ClipParameter { required float min = 1; }
"""


def _tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "src/caffe/proto").mkdir(parents=True)
    (tree / "src/caffe/proto/caffe.proto.orig").write_text(ORIG)
    native = tmp_path / "native"
    (native / "proto").mkdir(parents=True)
    (native / "src/caffe/layers").mkdir(parents=True)
    (native / "src/caffe/test").mkdir(parents=True)
    return tree, native


def _run(native, tree):
    return subprocess.run([sys.executable, SYNC, str(native), str(tree)], capture_output=True,
                          text=True)


def test_fragments_merge_and_files_sync(tmp_path):
    tree, native = _tree(tmp_path)
    (native / "proto/foo.proto").write_text(
        "// LayerParameter: optional FooParameter foo_param = 149;\nmessage FooParameter {}\n")
    (native / "src/caffe/layers/foo_layer.cpp").write_text("// foo\n")
    (native / "src/caffe/test/test_foo_layer.cpp").write_text("// test\n")
    out = _run(native, tree)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "foo_layer"
    proto = (tree / "src/caffe/proto/caffe.proto").read_text()
    assert "optional FooParameter foo_param = 149;" in proto.split("message ClipParameter")[0]
    assert "message FooParameter {}" in proto
    assert (tree / "src/caffe/layers/foo_layer.cpp").read_text() == "// foo\n"
    # unchanged files keep their mtime, so make does not recompile them
    mtime = os.stat(tree / "src/caffe/layers/foo_layer.cpp").st_mtime_ns
    assert _run(native, tree).returncode == 0
    assert os.stat(tree / "src/caffe/layers/foo_layer.cpp").st_mtime_ns == mtime
    # a layer removed from native/ leaves the tree too
    os.remove(native / "src/caffe/layers/foo_layer.cpp")
    assert _run(native, tree).returncode == 0
    assert not (tree / "src/caffe/layers/foo_layer.cpp").exists()


@pytest.mark.parametrize("fragment,message", [
    ("// LayerParameter: optional FooParameter foo_param = 148;\nmessage FooParameter {}\n",
     "collides"),
    ("message FooParameter {}\n", "exactly one"),
    ("// LayerParameter: optional FooParameter foo_param = 150;\nmessage Bar {}\n",
     "defines no message"),
])
def test_bad_fragments_are_clear_errors(tmp_path, fragment, message):
    tree, native = _tree(tmp_path)
    (native / "proto/foo.proto").write_text(fragment)
    out = _run(native, tree)
    assert out.returncode != 0
    assert message in out.stderr and "foo.proto" in out.stderr
