"""The CUDA build of the native layers (issue #8; DESIGN.md section 3).

With a GPU: every native gtest on both devices (GradientChecker on the GPU too) and each
layer's GPU pass against its CPU pass (native/src/caffe/test/test_gpu_cpu_agreement.cpp).
Without one those tests are skipped and say why; tools/gpu_check.sh runs them, and the timings,
on a GPU machine.

Without a GPU, where nvcc built the cuda-nopy-nocv variant (`make test` does): its gtest binary
holds the GPU agreement tests, and tools/gpu_check.sh runs end to end on the CPU
(GPU_CHECK_CPU=1) with that build, so the script that only ever runs on a lent GPU machine is
exercised on every change.
"""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_HOME = os.environ.get("CUDA_HOME", "/usr/local/cuda")


def _gpu_names():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return re.findall(r"^GPU \d+: .*$", out.stdout, re.M) if out.returncode == 0 else []


GPUS = _gpu_names()
needs_gpu = pytest.mark.skipif(
    not GPUS, reason="no GPU here (`nvidia-smi -L` failed or listed none); "
    "tools/gpu_check.sh runs the GPU tests on a GPU machine")


def _cuda_prefix():
    """The CUDA build to test: .caffe/cuda (with pycaffe) or .caffe/cuda-nopy-nocv."""
    for variant in ("cuda", "cuda-nopy-nocv"):
        prefix = os.path.join(ROOT, ".caffe", variant)
        if os.path.exists(os.path.join(prefix, ".complete")):
            return prefix
    if not os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
        pytest.skip("no nvcc under %s: no CUDA build to test" % CUDA_HOME)
    if os.environ.get("REID_SKIP_CUDA") == "1":
        pytest.skip("REID_SKIP_CUDA=1: the CUDA build was skipped")
    pytest.fail("nvcc exists but no CUDA build in .caffe/: run "
                "`CUDA=1 WITH_PYTHON=0 WITH_OPENCV=0 bash toolchain/setup.sh` (make test does)")


def _gtest(prefix, *args, timeout=1200):
    env = dict(os.environ, GLOG_minloglevel="1")
    return subprocess.run([os.path.join(prefix, "bin", "reid_native_tests")] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


# ---- with a GPU --------------------------------------------------------------------------

@needs_gpu
def test_native_gtests_pass_on_gpu_and_cpu():
    out = _gtest(_cuda_prefix(), "0")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    # GPU instantiations ran (TestDtypesAndDevices: /2 and /3 are GPUDevice<float, double>)
    assert re.search(r"^\[       OK \] AttentionAverageLayerTest/2\.TestGradient ", out.stdout, re.M)


@needs_gpu
def test_each_native_layer_agrees_gpu_vs_cpu():
    out = _gtest(_cuda_prefix(), "0", "--gtest_filter=*GpuCpuAgreement*")
    assert out.returncode == 0, out.stdout[-4000:]
    for layer in ("AttentionAverage", "SpatialLSTM"):
        assert re.search(r"%s GPU vs CPU: \d+ blobs, max abs difference" % layer, out.stdout), layer
    assert "net builtin_native_net GPU vs CPU" in out.stdout


# ---- without a GPU: the CUDA build and the GPU script ------------------------------------

def test_cuda_build_holds_the_gpu_agreement_tests():
    out = _gtest(_cuda_prefix(), "--gtest_list_tests", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for case in ("LayerGpuCpuAgreementTest/0.", "LayerGpuCpuAgreementTest/1.",
                 "NetGpuCpuAgreementTest."):
        assert case in out.stdout, case
    for name in ("AttentionAverage", "SpatialLSTM", "OneTrainingIteration"):
        assert re.search(r"^\s+%s$" % name, out.stdout, re.M), name


def test_gpu_check_script_runs_on_cpu(tmp_path):
    prefix = _cuda_prefix()
    env = dict(os.environ, GPU_CHECK_CPU="1", CAFFE_PREFIX=prefix, OUT=str(tmp_path),
               ITERS="2", TRAIN_ITERS="6", GTEST_FILTER="AttentionAverageLayerTest/0.*")
    out = subprocess.run(["bash", os.path.join(ROOT, "tools", "gpu_check.sh"),
                          str(tmp_path / "no_such_net.prototxt")],
                         capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert "measuring the smoke net tools/gpu_smoke_native.prototxt" in summary
    assert re.search(r"\[  PASSED  \] \d+ tests", summary), summary
    # the per-layer table names every layer of the smoke net, the attention layer included
    rows = re.findall(r"^  (\w+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+[0-9.]+%$", summary, re.M)
    assert {"conv1", "fc", "tam", "loss"} <= {r[0] for r in rows}, summary
    assert re.search(r"native data \(DummyData\): [0-9.]+ iterations/s", summary), summary
    if prefix.endswith("-nopy-nocv"):  # no Python layers in cuda-nopy-nocv
        assert "skipped: this Caffe" in summary
