"""The CUDA build of the native layers (docs/DESIGN.md §3).

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
    out = _gtest(_cuda_prefix(), "0", "--gtest_filter=*AgreementTest*")
    assert out.returncode == 0, out.stdout[-4000:]
    for layer in ("AttentionAverage", "SpatialLSTM"):
        assert re.search(r"%s GPU vs CPU \[propagate_down 0[^\]]*, iteration 2\]: \d+ blobs, "
                         r"max abs difference" % layer, out.stdout), layer
    assert "net builtin_native_net GPU vs CPU [iteration 2]" in out.stdout


# ---- without a GPU: the CUDA build and the GPU script ------------------------------------

def test_cuda_build_holds_the_gpu_agreement_tests():
    out = _gtest(_cuda_prefix(), "--gtest_list_tests", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for case in ("LayerAgreementTest/0.", "LayerAgreementTest/1.", "NetAgreementTest."):
        assert case in out.stdout, case
    for name in ("AttentionAverageManyRows", "AttentionAverageWideRows", "SpatialLSTM",
                 "TwoTrainingIterations"):
        assert re.search(r"^\s+%s$" % name, out.stdout, re.M), name


def _host_libstdcxx():
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    return re.search(r"libstdc\+\+\.so\.6 \(.*x86-64\) => (\S+)", out).group(1)


def test_gpu_check_script_runs_on_cpu(tmp_path):
    """Every step of the script on the small native nets, CPU only. The Caffe prefix carries a
    fallback/ C++ runtime like the bundle's: this machine has its own, so the script must not
    put it on the library path; CUDA_LIB_DIRS replaces the search for CUDA's libraries."""
    build = _cuda_prefix()
    prefix = tmp_path / "caffe"
    (prefix / "fallback").mkdir(parents=True)
    for sub in ("bin", "lib"):
        (prefix / sub).symlink_to(os.path.join(build, sub))
    (prefix / "fallback" / "libstdc++.so.6").symlink_to(_host_libstdcxx())
    cuda_dirs = str(tmp_path / "no_cuda_libs_here")
    out_dir = tmp_path / "out"
    env = dict(os.environ, GPU_CHECK_CPU="1", CAFFE_PREFIX=str(prefix), OUT=str(out_dir),
               CUDA_LIB_DIRS=cuda_dirs, ITERS="2", TRAIN_ITERS="4",
               GTEST_FILTER="AttentionAverageLayerTest/0.*",
               ALL_NET="prototxt/gpu_check/all_small_native.prototxt",
               CNN_NET="prototxt/gpu_check/cnn_small_native.prototxt",
               METRIC_NET="prototxt/mars/small/all/deploy_metric.prototxt")
    out = subprocess.run(["bash", os.path.join(ROOT, "tools", "gpu_check.sh")],
                         capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    summary = (out_dir / "summary.txt").read_text()
    assert "CUDA libraries from: %s" % cuda_dirs in summary
    assert "from the bundle's fallback/: (nothing" in summary
    assert re.search(r"^RESULT native gtests: \d+ passed \(CPU\)$", summary, re.M), summary
    assert re.search(r"^RESULT ALL net all_small_native CPU \(dry run\) vs CPU \[iteration 2\]: "
                     r"\d+ blobs", summary, re.M), summary
    # the per-layer tables name the trunk, the TAM and the SRM layers
    rows = re.findall(r"^  (\w+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+[0-9.]+%$", summary, re.M)
    assert {"conv1", "fc7_reid", "tam_xbar1", "srm_sweep"} <= {r[0] for r in rows}, summary
    assert re.search(r"^RESULT TAM\+SRM overhead: ALL / CNN forward-backward = [0-9.]+ ", summary,
                     re.M), summary
    assert re.search(r"^RESULT training ALL \(CPU\): [0-9.]+ iterations/s", summary, re.M)
    m = re.search(r"^RESULT SRM metric: (\d+) pairs/s \((\d+) pairs .*top 100 of 1980 MARS "
                  r"queries \(198000 pairs\): ([0-9.]+) s", summary, re.M)
    assert m, summary
    assert int(m.group(2)) == 8   # the small deploy_metric net's batch
    assert abs(198000 / int(m.group(1)) - float(m.group(3))) < 0.01 * float(m.group(3)) + 0.1
