"""Helpers shared by the test suite: numerical gradients and throwaway Caffe nets."""
import contextlib
import os
import subprocess
import tempfile

import numpy as np


def numeric_gradient(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function f at x (x is perturbed in place)."""
    g = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def net_from_prototxt(text, phase=None, weights=None):
    """A pycaffe Net built from prototxt text (written to a temporary file)."""
    import caffe
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    try:
        phase = caffe.TEST if phase is None else phase
        if weights:
            return caffe.Net(f.name, weights=weights, phase=phase)
        return caffe.Net(f.name, phase)
    finally:
        os.unlink(f.name)


# The GPU instantiations of the native gtests: TestDtypesAndDevices /2, /3 and the GPU-vs-CPU
# agreement tests (toolchain/run_tests.sh leaves out the same where no GPU is visible).
GPU_GTESTS = "*/2.*:*/3.*:*AgreementTest*"


def gtest_command(pattern):
    """The native gtest binary run on the tests matching `pattern`; where the build under test
    is a CUDA one and no GPU is visible (the CUDA image started without --gpus), without the
    GPU instantiations, which could only fail there."""
    import subprocess
    flt = pattern
    if os.environ.get("CAFFE_VARIANT", "cpu").startswith("cuda"):
        try:
            gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
        except OSError:
            gpu = False
        flt += "" if gpu else "-" + GPU_GTESTS
    return [gtest_binary(), "--gtest_filter=" + flt]


def gtest_binary():
    """Path of the native-layer gtest binary built by set-up."""
    prefix = os.environ.get("CAFFE_PREFIX") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".caffe", "cpu")
    with open(os.path.join(prefix, "share", "reid", "gtest_path")) as f:
        return f.read().strip()


@contextlib.contextmanager
def small_mount(where, size="64k", readonly=False):
    """Mount a tmpfs of `size` (read-only if asked) on the folder `where`, unmounted (and
    removed) afterwards: a full disk or a read-only file system for a test without touching
    the real ones. Needs root, which the suite runs as."""
    import subprocess
    import pytest
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    os.makedirs(where, exist_ok=True)
    opts = "size=%s%s" % (size, ",ro" if readonly else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
        os.rmdir(where)


def run_tool(*args, timeout=600):
    """Run a repository script with bin/python from the repository root, as a user would;
    asserts exit status 0 (showing the output's tail otherwise) and returns stdout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([os.path.join(root, "bin", "python")] + [str(a) for a in args],
                          cwd=root, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout
