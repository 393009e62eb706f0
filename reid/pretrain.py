"""Pretraining that stands in for ImageNet (paper 4.2: conv1..conv5 start from CaffeNet).

The small nets cannot start from ImageNet CaffeNet (other input size and widths), and a
trunk trained from random weights by the Table-2 losses alone is not what the paper
compares. So the trunk (conv1..fc7_reid) is first trained as a softmax identity classifier
(reid.nets.build.pretrain_net) on a pool of synthetic identities disjoint from the study's:
another seed draws other people (and other cameras). Its caffemodel then initialises every
variant by layer name, `bin/caffe train -solver ... -weights pretrain.caffemodel`, exactly as
the paper's runs start from CaffeNet: conv1..fc7_reid are copied, the TAM, LSTM, SRM and
DIFF heads start from their fillers, the classifier is left behind.
"""
import os

from reid import run
from reid.datasets.synthetic import synthetic_mars
from reid.nets import build
from reid.nets.config import Schedule
from reid.nets.generate import HEADER, net_text, write

SEED_OFFSET = 1000          # pretraining pool of seed s: synthetic seed s + SEED_OFFSET
# lr 0.01 left the classifier at chance (loss ln 60) for 130 iterations; 3e-3 learns.
DEFAULTS = dict(identities=60, iters=300, base_lr=0.003)
SCHEDULE = Schedule(batch_triplets=4, base_lr=DEFAULTS["base_lr"]).scaled(DEFAULTS["iters"])


def classes_of(prepared):
    """Number of identities (pid > 0) of a prepared dataset, every split."""
    from reid.datasets import open_dataset
    with open_dataset(prepared) as ds:
        return len({int(p) for p in ds.pids if p > 0})


def write_pretrain_nets(cfg, classes, run_dir, schedule):
    """train_val and solver of the pretraining net (schedule: a Schedule); returns
    {'train_val', 'solver'}."""
    train_val = os.path.join(run_dir, "train_val.prototxt")
    solver = os.path.join(run_dir, "solver.prototxt")
    write(train_val, net_text(build.pretrain_net(cfg, classes), "pretrain"))
    write(solver, HEADER + build.solver(cfg, train_val, os.path.join(run_dir, "snapshots",
                                                                     "snap"), schedule))
    return {"train_val": train_val, "solver": solver}


def pretrain(out_dir, cfg, identities=DEFAULTS["identities"], iters=DEFAULTS["iters"],
             base_lr=DEFAULTS["base_lr"], progress=True, **synthetic):
    """Generate the disjoint pool (seed cfg.seed + SEED_OFFSET), train the classifier with
    `bin/caffe train`; returns the caffemodel (reused when it exists)."""
    out_dir = str(out_dir)
    final = os.path.join(out_dir, "run", "snapshots", "snap_iter_%d.caffemodel" % iters)
    if os.path.isfile(final):
        return final
    data = synthetic_mars(os.path.join(out_dir, "data"), identities=identities,
                          seed=cfg.seed + SEED_OFFSET, **synthetic)
    cfg = cfg.with_(data_source=data)
    schedule = SCHEDULE.scaled(iters, base_lr)
    nets = write_pretrain_nets(cfg, classes_of(data), os.path.join(out_dir, "run"), schedule)
    run.train(nets["solver"], os.path.join(out_dir, "run", "train.log"), iters,
              progress=progress)
    return final


def start_weights(train_val, seed, path, weights=None):
    """The weights `bin/caffe train` starts from (the solver seeds Caffe's RNG with its
    random_seed, builds the net from its fillers, then copies -weights by layer name),
    saved to `path` so that diagnostics can read the state at iteration 0."""
    import caffe
    if os.path.isfile(path):
        return path
    caffe.set_mode_cpu()
    caffe.set_random_seed(int(seed))
    net = caffe.Net(train_val, caffe.TRAIN)
    if weights:
        net.copy_from(weights)
    net.save(path)
    return path
