"""The learning test (issue: networks): the small ALL net, trained with `bin/caffe train` on
a small synthetic MARS-layout dataset on the CPU, lowers both losses and ranks held-out
identities clearly better than chance.

Set-up: 24 identities (12 train, 12 test), difficulty 0.3, B = 4 triplets, 300 iterations at
lr 0.003 (gradients clipped at 10); about 2 minutes on 2 cores. Measured once: rank-1 0.51,
chance 0.054.

Threshold: chance is measured, not assumed: the official-protocol rank-1 of random features
on the same queries and gallery, averaged over 50 draws (about 0.05 here: 12 test identities
plus distractors and junk). The trained net must reach at least chance + 0.15 -- with about
30 queries that is five or more queries above chance, far outside the spread of the random
draws (their standard deviation is about 0.04), and an untrained or broken net does not get
there.
"""
import numpy as np

from reid import run
from reid.datasets import open_dataset
from reid.datasets.synthetic import synthetic_mars
from reid.evaluation import protocols
from reid.evaluation.score import score_run
from reid.nets.config import SMALL, VARIANTS, NetConfig, Schedule

ITERS = 300


def _chance(ds, draws=50):
    test = ds.gallery_idx
    pos = {int(t): i for i, t in enumerate(test)}
    q = np.array([pos[int(t)] for t in ds.query_idx])
    rng = np.random.default_rng(0)
    r1 = [protocols.evaluate_mars_official(rng.random((q.size, test.size)), ds.pids[test],
                                           ds.cams[test], q)["ranks"]["1"] for _ in range(draws)]
    return float(np.mean(r1)), float(np.std(r1))


def test_small_all_net_learns(tmp_path_factory):
    out = tmp_path_factory.mktemp("learning")
    data = synthetic_mars(str(out), identities=24, seed=5, difficulty=0.3)
    cfg = NetConfig(size=SMALL, variant=VARIANTS["all"], data_source=data, batch_triplets=4,
                    workers=1, seed=2)
    nets = run.write_nets(cfg, str(out / "run"), Schedule(
        max_iter=ITERS, stepsize=10 * ITERS, base_lr=0.003, display=10, snapshot=ITERS))
    log = run.train(nets["solver"], str(out / "train.log"), ITERS, progress=False)
    for name in ("triplet_loss", "metric_loss"):
        values = log.outputs[name]
        first, last = np.mean(values[:3]), np.mean(values[-3:])
        print(name, first, last)
        assert last < first, (name, values)
    ds = open_dataset(data)
    results = score_run(
        ds, cfg.variant, nets, out / "run" / "snapshots" / ("snap_iter_%d.caffemodel" % ITERS),
        progress=False).results
    rank1 = results[0]["ranks"]["1"]
    chance, spread = _chance(ds)
    print("rank-1 %.3f, chance %.3f +- %.3f" % (rank1, chance, spread))
    assert rank1 >= chance + 0.15
