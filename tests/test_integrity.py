"""Weights, solverstates, snapshots and datasets that belong together (reid.integrity):
bin/caffe refuses a bad -weights or -snapshot with one line before training starts, a
copied run resumes from its own weights, and a rebuilt dataset is detected on resume."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reid import integrity, run as runs
from reid.nets.config import SMALL, VARIANTS, NetConfig, Schedule

ROOT = Path(__file__).resolve().parents[1]


def _nets(folder, data, iters, snapshot=3, **kw):
    cfg = NetConfig(size=SMALL, variant=VARIANTS["all"], data_source=str(data),
                    batch_triplets=2, workers=0)
    sched = dict(max_iter=iters, stepsize=1000, base_lr=0.003, display=1, snapshot=snapshot)
    sched.update(kw)
    return runs.write_nets(cfg, str(folder), Schedule(**sched))


def _caffe(*args):
    return subprocess.run([str(ROOT / "bin" / "caffe"), "train", *map(str, args)],
                          capture_output=True, text=True)


def _weights(path):
    from reid.datasets.lmdb_store import caffe_pb2
    net = caffe_pb2().NetParameter()
    net.ParseFromString(Path(path).read_bytes())
    return {(layer.name, i): np.array(b.data) for layer in net.layer
            for i, b in enumerate(layer.blobs)}


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def run(tiny_mars, tmp_path_factory):
    """A finished 6-iteration run with snapshots (and records) at 3 and 6."""
    folder = tmp_path_factory.mktemp("run") / "a"
    nets = _nets(folder, tiny_mars, 6)
    runs.train(nets["solver"], str(folder / "train.log"), 6, progress=False)
    return folder, nets


def test_bad_weights_file_is_one_line_before_training(run, tmp_path):
    folder, nets = run
    empty, missing = tmp_path / "empty.caffemodel", tmp_path / "missing.caffemodel"
    empty.write_bytes(b"")
    for path, why in ((empty, "is empty (0 bytes)"), (missing, "not found")):
        r = _caffe("-solver", nets["solver"], "-weights", path)
        assert r.returncode == 2, r.stderr[-800:]
        assert r.stderr.strip() == f"error: {path}: weights file (.caffemodel) {why}"
    with pytest.raises(integrity.IntegrityError, match="not a readable weights file"):
        integrity.check_weights_file(folder / "train_val.prototxt")
    integrity.check_weights_file(folder / "snapshots" / "snap_iter_3.caffemodel")


def test_truncated_solverstate_names_the_file(run, tmp_path):
    folder, nets = run
    state = tmp_path / "snap_iter_3.solverstate"
    data = (folder / "snapshots" / "snap_iter_3.solverstate").read_bytes()
    state.write_bytes(data[:len(data) // 2])
    shutil.copy(folder / "snapshots" / "snap_iter_3.caffemodel", tmp_path)
    r = _caffe("-solver", nets["solver"], "-snapshot", state)
    assert r.returncode == 2, r.stderr[-800:]
    assert r.stderr.strip().startswith(f"error: {state}: not a readable solverstate (truncated")


def test_copied_run_resumes_from_its_own_weights(run, tiny_mars, tmp_path):
    """Resume the copy from its iteration 3 after the original's iteration-3 weights were
    replaced: the copy must still reach the uninterrupted run's iteration-6 weights."""
    folder, _ = run
    original = tmp_path / "original"
    shutil.copytree(folder, original)
    copy = tmp_path / "copy"
    nets = _nets(copy, tiny_mars, 6)
    shutil.copytree(original / "snapshots", copy / "snapshots")
    (copy / "snapshots" / "snap_iter_6.caffemodel").unlink()
    # the solverstates of the original folder name its own caffemodels: make them differ
    s3 = original / "snapshots" / "snap_iter_3.solverstate"
    state = integrity.read_solverstate(s3)
    state.learned_net = str(s3.with_suffix(".caffemodel"))
    for s in (s3, copy / "snapshots" / "snap_iter_3.solverstate"):
        datasets = (integrity.check_snapshot(s) or {}).get("datasets", {})
        s.write_bytes(state.SerializeToString())
        integrity.write_record(s, datasets)
    shutil.copy(original / "snapshots" / "snap_iter_6.caffemodel", s3.with_suffix(".caffemodel"))
    runs.train(nets["solver"], str(copy / "train.log"), 6, progress=False,
                     snapshot=str(copy / "snapshots" / "snap_iter_3.solverstate"))
    assert _same_weights(copy / "snapshots" / "snap_iter_6.caffemodel",
                         folder / "snapshots" / "snap_iter_6.caffemodel")
    # a moved run (the original path gone) resumes too
    shutil.rmtree(original)
    (copy / "snapshots" / "snap_iter_6.caffemodel").unlink()
    runs.train(nets["solver"], str(copy / "train.log"), 6, progress=False,
                     snapshot=str(copy / "snapshots" / "snap_iter_3.solverstate"))
    assert _same_weights(copy / "snapshots" / "snap_iter_6.caffemodel",
                         folder / "snapshots" / "snap_iter_6.caffemodel")


def test_resume_on_a_rebuilt_dataset_is_refused(tmp_path):
    from reid.datasets.synthetic import synthetic_mars
    data = synthetic_mars(str(tmp_path / "data"), identities=8, seed=5)
    nets = _nets(tmp_path / "run", data, 2, snapshot=2)
    runs.train(nets["solver"], str(tmp_path / "run" / "train.log"), 2, progress=False)
    nets = _nets(tmp_path / "run", data, 4, snapshot=2)
    state = tmp_path / "run" / "snapshots" / "snap_iter_2.solverstate"
    same = integrity.dataset_identity(data)
    shutil.rmtree(tmp_path / "data")                      # rebuilt from another source
    synthetic_mars(str(tmp_path / "data"), identities=8, seed=6)
    assert integrity.dataset_identity(data) != same
    with pytest.raises(ValueError, match=f"{data}: not the dataset this snapshot was "
                                         f"trained on"):
        runs.train(nets["solver"], str(tmp_path / "run" / "train.log"), 4,
                         progress=False, snapshot=str(state))
    assert not (tmp_path / "run" / "snapshots" / "snap_iter_4.caffemodel").exists()
    assert integrity.record_path(state).is_file()          # written after the snapshot


def test_disk_full_during_a_snapshot_leaves_no_truncated_snapshot(tiny_mars, tmp_path):
    """Snapshots every 2 iterations into a 3 MB file system: the first fits (2.6 MB), the
    second fills the disk mid-write. The run fails naming the disk, the truncated files are
    gone, and the complete snapshot (with its record) is what a resume finds."""
    from reid.testing import small_mount
    nets = _nets(tmp_path / "run", tiny_mars, 6, snapshot=2)
    snaps = tmp_path / "run" / "snapshots"
    with small_mount(snaps, "3m"):
        with pytest.raises(RuntimeError) as err:
            runs.train(nets["solver"], str(tmp_path / "run" / "train.log"), 6,
                             progress=False)
        msg = str(err.value)
        assert "the disk is full" in msg and str(snaps / "snap_iter_4.caffemodel") in msg, msg
        assert sorted(p.name for p in snaps.iterdir()) == [
            "snap_iter_2.caffemodel", "snap_iter_2.solverstate", "snap_iter_2.solverstate.json"]
        assert integrity.check_snapshot(snaps / "snap_iter_2.solverstate")["iteration"] == 2
