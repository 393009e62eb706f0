"""Training with `bin/caffe train`: resume, learning, bad input."""
import os
import subprocess

import numpy as np
import pytest

from reid import run
from reid.datasets.sampler import TripletSampler
from reid.nets.config import SMALL, SMALL_SCHEDULE, VARIANTS, NetConfig, Schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, data, name, iters, snapshot, variant="all", **schedule):
    cfg = NetConfig(size=SMALL, variant=VARIANTS[variant], data_source=data, batch_triplets=2,
                    workers=0)
    sched = Schedule(**dict(dict(max_iter=iters, stepsize=1000, base_lr=0.003, display=1,
                                 snapshot=snapshot), **schedule))
    return cfg, run.write_nets(cfg, str(tmp_path / name), sched)


def _weights(path):
    import caffe
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    return {(layer.name, i): np.array(b.data) for layer in model.layer
            for i, b in enumerate(layer.blobs)}


def test_resume_gives_the_uninterrupted_weights(tiny_mars, tmp_path):
    _, full = _run(tmp_path, tiny_mars, "full", 6, 3)
    run.train(full["solver"], str(tmp_path / "full.log"), 6, progress=False)
    _, part = _run(tmp_path, tiny_mars, "part", 6, 3)
    # the second run resumes from the first run's iteration-3 snapshot
    state = str(tmp_path / "full" / "snapshots" / "snap_iter_3.solverstate")
    run.train(part["solver"], str(tmp_path / "part.log"), 6, snapshot=state, progress=False)
    a = _weights(str(tmp_path / "full" / "snapshots" / "snap_iter_6.caffemodel"))
    b = _weights(str(tmp_path / "part" / "snapshots" / "snap_iter_6.caffemodel"))
    assert a.keys() == b.keys() and len(a) > 20
    changed = 0
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))
    start = _weights(str(tmp_path / "full" / "snapshots" / "snap_iter_3.caffemodel"))
    changed = sum(not np.array_equal(start[k], a[k]) for k in a)
    assert changed > 10      # and iterations 4-6 did change the weights


def test_missing_database_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "no_such_dataset")
    _, nets = _run(tmp_path, missing, "missing", 2, 2)
    with pytest.raises(RuntimeError) as err:
        run.train(nets["solver"], str(tmp_path / "m.log"), 2, progress=False)
    assert "does not exist" in str(err.value) and missing in str(err.value)


def test_param_str_of_the_wrong_type_is_a_clear_error():
    """A quoted number (split_index "3") is refused by name, not a TypeError deep inside."""
    from python_layers.params import parse_param_str
    from python_layers.sequence_data import DEFAULTS
    with pytest.raises(ValueError, match=r"SequenceTripletDataLayer param_str: split_index "
                                         r"must be an integer \(like the default 0\), got '3'"):
        parse_param_str('{"split_index": "3"}', DEFAULTS, "SequenceTripletDataLayer")
    for bad in ('{"mirror": 1}', '{"batch_triplets": 2.5}', '{"mean": 104}'):
        with pytest.raises(ValueError, match="param_str: "):
            parse_param_str(bad, DEFAULTS, "SequenceTripletDataLayer")
    p = parse_param_str('{"split_index": 3, "mean": [1, 2, 3]}', DEFAULTS, "x")
    assert p["split_index"] == 3 and p["mean"] == [1, 2, 3]


def test_collapse_warning_when_the_triplet_loss_sits_at_the_margin(tmp_path):
    """F collapsed to a point gives a triplet loss of exactly the margin: warned, naming the
    iteration it got stuck at; a loss that passes the margin on its way down is not."""
    def log(values):
        out = run.TrainLog()
        for i, v in enumerate(values):
            out.add(10 * i, "triplet_loss", v)
        return out
    stuck = log([0.9, 0.6, 0.45, 0.3002, 0.2999, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    assert "margin 0.3 since iteration 30" in run.collapse_warning(stuck, 0.3)
    assert run.collapse_warning(log([0.9, 0.5, 0.3, 0.3, 0.25, 0.2, 0.1, 0.05]), 0.3) is None
    assert run.collapse_warning(log([0.3, 0.3]), 0.3) is None          # too few readings
    cfg = NetConfig(size=SMALL, margin=0.2)
    nets = run.write_nets(cfg, str(tmp_path / "m"), SMALL_SCHEDULE)
    assert run.triplet_margin(nets["solver"]) == 0.2
    assert run.default_log(nets["solver"]) == str(tmp_path / "m" / "train.log")
    assert run.default_log(os.path.join(ROOT, "prototxt", "mars", "small", "all",
                                        "solver.prototxt")) == "work/mars/small/all/train.log"


def test_nan_loss_stops_training_and_names_the_iteration(tiny_mars, tmp_path):
    _, nets = _run(tmp_path, tiny_mars, "nan", 40, 1000, variant="cnn_diff", base_lr=1e12)
    with pytest.raises(run.TrainingDiverged, match=r"at iteration \d+"):
        run.train(nets["solver"], str(tmp_path / "nan.log"), 40, progress=False)


class _T:
    def __init__(self, tid, pid, cam, n=10):
        self.tid, self.pid, self.cam, self.num_frames = tid, pid, cam, n


def test_sampler_triplets_and_identities_with_one_tracklet():
    tracklets = [_T(0, 1, 1), _T(1, 1, 2), _T(2, 2, 1), _T(3, 2, 1), _T(4, 3, 1),
                 _T(5, -1, 1), _T(6, 0, 2)]
    s = TripletSampler(tracklets, batch_triplets=4, seq_len=6, seed=0)
    assert s.single == [3]                     # pid 3 has one tracklet: negatives only
    for k in range(20):
        batch = s.batch(k)
        a, p, n = batch[:4], batch[4:8], batch[8:]
        for x, y, z in zip(a, p, n):
            assert x.pid == y.pid != z.pid and x.tid != y.tid
            assert x.pid in (1, 2) and z.pid in (1, 2, 3)
            if x.pid == 1:
                assert {x.tid, y.tid} == {0, 1}   # the other camera when there is one
        assert all(0 <= c.start <= 4 for c in batch)
    assert s.batch(7) == s.batch(7)            # batch k depends on (seed, k) only
    with pytest.raises(ValueError, match="one tracklet"):
        TripletSampler([_T(0, 1, 1), _T(1, 2, 1), _T(2, 3, 1)], 2)


def test_mirroring_is_shared_by_every_clip_of_a_batch():
    """The SRM compares two clips location by location and a mined negative may be any clip of
    the batch, so a batch is mirrored as a whole or not at all; both happen; mirror=False
    never flips and leaves the clips drawn unchanged."""
    tracklets = [_T(i, 1 + i // 2, 1 + i % 2) for i in range(12)]
    on = TripletSampler(tracklets, batch_triplets=4, seq_len=6, seed=3)
    off = TripletSampler(tracklets, batch_triplets=4, seq_len=6, seed=3, mirror=False)
    flips = []
    for k in range(40):
        batch = on.batch(k)
        assert len({c.mirror for c in batch}) == 1, k
        flips.append(batch[0].mirror)
        plain = off.batch(k)
        assert not any(c.mirror for c in plain)
        assert [(c.tid, c.start) for c in plain] == [(c.tid, c.start) for c in batch]
    assert 5 < sum(flips) < 35
