"""`make bench` section for the nets: `caffe time` of ALL at paper size on the CPU (per layer),
the data layer's triplets/s against what the net consumes, and iterations/s of the small ALL
net. Everything runs on one synthetic MARS-layout dataset generated into a temp folder."""
import os
import re
import subprocess
import tempfile
import time

from reid import run
from reid.datasets.synthetic import synthetic_mars
from reid.nets.config import PAPER, SMALL, VARIANTS, NetConfig, Schedule

LAYER_RE = re.compile(r"\] +(\S+)\s+(forward|backward): ([\d.]+) ms")
AVG_RE = re.compile(r"Average Forward-Backward: ([\d.]+) ms")


def caffe_time(model, iterations):
    out = subprocess.run([os.path.join(run.ROOT, "bin", "caffe"), "time", "-model", model,
                          "-iterations", str(iterations)], capture_output=True, text=True,
                         env=dict(os.environ, GLOG_minloglevel="0"))
    if out.returncode != 0:
        raise RuntimeError("caffe time failed:\n" + "\n".join(out.stderr.splitlines()[-10:]))
    layers = {}
    for name, kind, ms in LAYER_RE.findall(out.stderr):
        layers.setdefault(name, {})[kind] = float(ms)
    return float(AVG_RE.search(out.stderr).group(1)), layers


def data_layer_rate(cfg, batches=20):
    """Triplets/s of SequenceTripletDataLayer alone (a net of just that layer)."""
    import caffe
    from reid.nets import build
    from caffe import NetSpec
    from reid.nets.layers import python
    import json
    n = NetSpec()
    n.data, n.label = python("python_layers.sequence_data", "SequenceTripletDataLayer", [],
                             ntop=2, param_str=json.dumps(cfg.data_params()))
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(str(n.to_proto()))
    net = caffe.Net(f.name, caffe.TRAIN)
    net.forward()   # warm up the workers
    t0 = time.perf_counter()
    for _ in range(batches):
        net.forward()
    rate = batches * cfg.batch_triplets / (time.perf_counter() - t0)
    del net
    os.unlink(f.name)
    return rate


def main():
    tmp = tempfile.mkdtemp(prefix="bench_nets_")
    data = synthetic_mars(tmp, identities=20, seed=1)
    print("\n-- small ALL net (%dx%d input, B=4 triplets of T=6), CPU --"
          % (SMALL.height, SMALL.width))
    small = NetConfig(size=SMALL, variant=VARIANTS["all"], data_source=data, batch_triplets=4)
    nets = run.write_nets(small, os.path.join(tmp, "small"), Schedule(max_iter=1))
    ms, _ = caffe_time(nets["train_val"], 10)
    consume = 1000.0 / ms * small.batch_triplets
    print("forward+backward %.0f ms/iteration = %.2f iterations/s = %.1f triplets/s consumed"
          % (ms, 1000.0 / ms, consume))
    print("%-28s %12s %18s" % ("data layer", "triplets/s", "vs net consumption"))
    for workers in (0, 1, 2):
        rate = data_layer_rate(small.with_(workers=workers))
        print("%-28s %12.1f %17.1fx" % ("small, %d worker(s)" % workers, rate, rate / consume))
    print("\n-- ALL at paper size (227x227, fc6/fc7 1024, B=1 triplet of T=6), CPU --")
    paper = NetConfig(size=PAPER, variant=VARIANTS["all"], data_source=data, batch_triplets=1)
    nets = run.write_nets(paper, os.path.join(tmp, "paper"), Schedule(max_iter=1))
    ms, layers = caffe_time(nets["train_val"], 2)
    print("forward+backward %.0f ms/iteration (%.2f iterations/s)" % (ms, 1000.0 / ms))
    rows = sorted(layers.items(), key=lambda kv: -sum(kv[1].values()))
    print("%-22s %10s %10s %8s" % ("layer", "fwd ms", "bwd ms", "share"))
    for name, t in rows[:25]:
        total = sum(t.values())
        print("%-22s %10.2f %10.2f %7.1f%%" % (name, t.get("forward", 0), t.get("backward", 0),
                                               100 * total / ms))
    rate = data_layer_rate(paper.with_(workers=2), batches=10)
    print("data layer at 227x227, 2 workers: %.1f triplets/s vs %.2f consumed (%.0fx)"
          % (rate, 1000.0 / ms, rate / (1000.0 / ms)))


if __name__ == "__main__":
    main()
