"""No collapse (paper 3.2; NetConfig.frame_norm): the small ALL net (TAM + LSTM + SRM),
trained at the committed small learning rate, keeps its test features F apart.

Before frame_norm = 'rms', at lr 3e-3 every LSTM-based F ended on one point within ~100
iterations: the mean distance between L2-normalised test features (the spread) fell to
0.000 while the triplet loss sat at the margin (docs/TABLE2.md). Floor 0.2: a collapsed F is
below 0.1, a working one well above 0.3.
"""
import numpy as np

from reid import run
from reid.datasets import open_dataset
from reid.datasets.synthetic import synthetic_mars
from reid.evaluation import rerank
from reid.evaluation.features import FeatureExtractor
from reid.nets.config import SMALL, SMALL_SCHEDULE, VARIANTS, NetConfig

ITERS = 200
FLOOR = 0.2


def test_recurrent_features_do_not_collapse_at_the_committed_lr(tmp_path_factory):
    out = tmp_path_factory.mktemp("no_collapse")
    data = synthetic_mars(str(out), identities=16, seed=4)
    cfg = NetConfig(size=SMALL, variant=VARIANTS["all"], data_source=data, batch_triplets=4,
                    workers=1, seed=3)
    lr = SMALL_SCHEDULE.base_lr
    nets = run.write_nets(cfg, str(out / "run"), SMALL_SCHEDULE.scaled(ITERS))
    run.train(nets["solver"], str(out / "train.log"), ITERS, progress=False)
    ds = open_dataset(data)
    ex = FeatureExtractor(nets["deploy_features"],
                          str(out / "run" / "snapshots" / ("snap_iter_%d.caffemodel" % ITERS)))
    F = ex.extract(ds, ds.gallery_idx, mode="first", progress=False)["F"]
    d = rerank.euclidean_distance(F, F)
    spread = d.sum() / (len(F) * (len(F) - 1))
    print("lr %g: spread of the test F %.3f" % (lr, spread))
    assert spread > FLOOR
