"""Benchmark of the SRM's six-direction spatial LSTM sweep (paper 3.3) on the CPU.

Forward + backward time at the paper's size (C = 128 after the 1x1 conv, T = 6, 6 x 6 pool5
maps, Hd = 128, 16 pairs) of:

- the native "SpatialLSTM" layer (C++),
- the Python layer python_layers.spatial_lstm.SpatialLSTMLayer (NumPy),
- Caffe's own "LSTM" layer doing the same work: six LSTM layers, one per direction, on the
  volume already permuted to time-major lines (the permutation is not timed, in its favour).

Each is a pycaffe net built from a prototxt string with force_backward (so the input gradient
is computed too) and timed as net.forward() and net.backward(); the table reports the median
over the repeats, interleaved round-robin, and each total's ratio to the native layer. A last
row times the sweep's matrix products alone (the same GEMM shapes through NumPy's BLAS): no
implementation can beat it, so it bounds every ratio.

All are measured in one worker process whose OPENBLAS_NUM_THREADS is fixed before NumPy and
Caffe load, so both BLAS copies (NumPy's and Caffe's) use the same number of threads. The
default is 1 (--threads to change it): with two OpenBLAS thread pools in one process on a
2-core machine that others also use, 2 threads made the NumPy timings swing by 5x between runs.
"""
import argparse
import json
import os
import time

from reid.benchmarks import worker_main
from reid.testing import net_from_prototxt

DIRECTIONS = ("T+", "T-", "W+", "W-", "H+", "H-")


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=16, help="pairs in the batch (N)")
    p.add_argument("--c", type=int, default=128, help="channels of the volume (C)")
    p.add_argument("--t", type=int, default=6)
    p.add_argument("--h", type=int, default=6)
    p.add_argument("--w", type=int, default=6)
    p.add_argument("--hd", type=int, default=128, help="hidden width per direction (Hd)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1,
                   help="OPENBLAS_NUM_THREADS for both BLAS copies (default 1: see the docstring)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _shape(dims):
    return "shape { %s }" % " ".join("dim: %d" % d for d in dims)


def sweep_prototxt(shape, hd, python, python_params=None, native_params=""):
    """A net of one sweep layer on an Input x of `shape`; extra Python param_str keys or
    native spatial_lstm_param text (e.g. fillers) may be given."""
    head = ('force_backward: true\n'
            'layer { name: "in" type: "Input" top: "x" input_param { %s } }\n' % _shape(shape))
    if python:
        params = json.dumps(dict({"num_output": hd}, **(python_params or {})))
        return head + ('layer { name: "sweep" type: "Python" bottom: "x" top: "y" python_param { '
                       'module: "python_layers.spatial_lstm" layer: "SpatialLSTMLayer" '
                       "param_str: '%s' } }\n" % params)
    return head + ('layer { name: "sweep" type: "SpatialLSTM" bottom: "x" top: "y" '
                   "spatial_lstm_param { num_output: %d %s } }\n" % (hd, native_params))


def lstm6_prototxt(shape, hd):
    """Six Caffe LSTM layers, each on one direction's time-major lines (L, lines, C)."""
    N, C, T, H, W = shape
    lengths = {"T": T, "H": H, "W": W}
    text = "force_backward: true\n"
    for d in DIRECTIONS:
        L = lengths[d[0]]
        lines = N * T * H * W // L
        k = DIRECTIONS.index(d)
        text += ('layer { name: "in%d" type: "Input" top: "x%d" top: "cont%d" input_param { %s %s } }\n'
                 'layer { name: "lstm%d" type: "LSTM" bottom: "x%d" bottom: "cont%d" top: "h%d" '
                 'recurrent_param { num_output: %d '
                 'weight_filler { type: "uniform" min: -0.08 max: 0.08 } } }\n'
                 % (k, k, k, _shape((L, lines, C)), _shape((L, lines)), k, k, k, k, hd))
    return text



def _time_once(net):
    t0 = time.perf_counter()
    net.forward()
    t1 = time.perf_counter()
    net.backward()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _gemm_floor(shape, hd, clock=time.perf_counter):
    """The sweep's matrix products alone (NumPy's BLAS): a lower bound for any implementation."""
    import numpy as np
    N, C, T, H, W = shape
    P, G = N * T * H * W, 4 * hd
    rng = np.random.default_rng(0)
    X = rng.normal(size=(P, C)).astype(np.float32)
    Hs = rng.normal(size=(P, hd)).astype(np.float32)
    dA = rng.normal(size=(P, G)).astype(np.float32)
    A = np.empty((P, G), np.float32)
    W_xc = rng.normal(size=(G, C)).astype(np.float32)
    W_hc = rng.normal(size=(G, hd)).astype(np.float32)

    def run():
        t0 = clock()
        for L in (T, T, W, W, H, H):
            nl = P // L
            np.matmul(X, W_xc.T, out=A)
            for s in range(1, L):
                A[s * nl:(s + 1) * nl] += Hs[(s - 1) * nl:s * nl] @ W_hc.T
        t1 = clock()
        for L in (T, T, W, W, H, H):
            nl = P // L
            for s in range(L - 1, 0, -1):
                Hs[(s - 1) * nl:s * nl] += dA[s * nl:(s + 1) * nl] @ W_hc
            dA.T @ X, dA[nl:].T @ Hs[:P - nl], dA @ W_xc
        return t1 - t0, clock() - t1
    return run


def _fill(net, rng):
    for name, blob in net.blobs.items():
        if name.startswith("cont"):
            blob.data[...] = 1
            blob.data[0] = 0  # every line starts at its first step
        elif name.startswith("x"):
            blob.data[...] = rng.normal(size=blob.data.shape)
    for name in net.outputs:
        net.blobs[name].diff[...] = rng.normal(size=net.blobs[name].data.shape)


def worker(a):
    """Measure all implementations in this process, interleaved so that load from other
    processes hits them alike; print a JSON result."""
    import caffe
    import numpy as np
    caffe.set_mode_cpu()
    rng = np.random.default_rng(0)
    shape = (a.n, a.c, a.t, a.h, a.w)
    runs = []
    for label, text in (("native SpatialLSTM (C++)", sweep_prototxt(shape, a.hd, False)),
                        ("Python SpatialLSTMLayer (NumPy)", sweep_prototxt(shape, a.hd, True)),
                        ("Caffe LSTM x6 (permuted volumes)", lstm6_prototxt(shape, a.hd))):
        net = net_from_prototxt(text)
        _fill(net, rng)
        runs.append((label, (lambda n: lambda: _time_once(n))(net)))
    runs.append(("its GEMMs alone (NumPy BLAS, bound)", _gemm_floor(shape, a.hd)))
    times = {label: [] for label, _ in runs}
    for label, run in runs:  # warm-up: allocations, first touch
        run()
    for _ in range(a.repeats):
        for label, run in runs:
            times[label].append(run())
    med = lambda v: sorted(v)[len(v) // 2] * 1e3
    rows = [{"label": label, "forward_ms": med([f for f, _ in times[label]]),
             "backward_ms": med([b for _, b in times[label]]),
             "total_ms": med([f + b for f, b in times[label]])} for label, _ in runs]
    print(json.dumps({"rows": rows, "threads": os.environ.get("OPENBLAS_NUM_THREADS")}))


def format_table(a, result):
    rows = result["rows"]
    base = rows[0]["total_ms"]
    lines = ["SRM six-direction spatial LSTM sweep, CPU, forward+backward (median of %d), "
             "N=%d C=%d T=%d H=%d W=%d Hd=%d, OPENBLAS_NUM_THREADS=%s"
             % (a.repeats, a.n, a.c, a.t, a.h, a.w, a.hd, result["threads"]),
             "%-34s %11s %12s %10s %16s" % ("implementation", "forward ms", "backward ms", "total ms",
                                          "total / native")]
    for r in rows:
        lines.append("%-34s %11.1f %12.1f %10.1f %15.2fx"
                     % (r["label"], r["forward_ms"], r["backward_ms"], r["total_ms"],
                        r["total_ms"] / base))
    return "\n".join(lines)


def main(argv=None):
    a = _args(argv)
    return worker_main("reid.benchmarks.srm", a, [
        "--n", a.n, "--c", a.c, "--t", a.t, "--h", a.h, "--w", a.w, "--hd", a.hd,
        "--repeats", a.repeats], worker, lambda result: format_table(a, result))


if __name__ == "__main__":
    main()
