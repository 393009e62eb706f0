"""tools/train.py as a user runs it: a resumed run keeps the earlier log, an early stop is
reported with a non-zero exit, and a finished run's log ends without stack traces."""
import os
import signal
import subprocess
import time
from pathlib import Path

from reid import run as runs
from reid.nets.config import SMALL, VARIANTS, NetConfig, Schedule

ROOT = Path(__file__).resolve().parents[1]


def _nets(folder, data, iters, snapshot, workers=0):
    cfg = NetConfig(size=SMALL, variant=VARIANTS["cnn_tam"], data_source=str(data),
                    batch_triplets=2, workers=workers)
    sched = dict(max_iter=iters, stepsize=1000, base_lr=0.003, display=1, snapshot=snapshot)
    return runs.write_nets(cfg, str(folder), Schedule(**sched))


def _train_tool(*args):
    return subprocess.Popen([str(ROOT / "bin" / "python"), str(ROOT / "tools" / "train.py"),
                             "--quiet", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_resume_appends_to_the_log(tiny_mars, tmp_path):
    nets = _nets(tmp_path, tiny_mars, 2, 2)
    assert _train_tool(nets["solver"]).wait() == 0
    log = tmp_path / "train.log"
    first = log.read_text()
    assert "Iteration 0" in first
    nets = _nets(tmp_path, tiny_mars, 4, 2)
    p = _train_tool(nets["solver"], "--snapshot",
                    tmp_path / "snapshots" / "snap_iter_2.solverstate")
    assert p.wait() == 0, p.stdout.read()
    text = log.read_text()
    assert text.startswith(first)                      # the readings before the resume point
    assert "Iteration 4" in text[len(first):]


def _children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        out += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
    return out


def test_early_stop_is_reported_and_exits_non_zero(tiny_mars, tmp_path):
    nets = _nets(tmp_path, tiny_mars, 40, 1000)
    p = _train_tool(nets["solver"])
    log = tmp_path / "train.log"
    deadline = time.time() + 300
    while not (log.is_file() and "Iteration 3," in log.read_text()):
        assert p.poll() is None and time.time() < deadline, "training did not start"
        time.sleep(0.2)
    caffe, = _children(p.pid)
    os.kill(caffe, signal.SIGINT)                     # Caffe snapshots and stops early
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 3, out
    assert "train: done" not in out
    stopped = [l for l in out.splitlines() if "stopped early at iteration" in l]
    assert stopped and "of 40" in stopped[0], out
    it = int(stopped[0].split("stopped early at iteration ")[1].split()[0])
    assert 3 <= it < 40
    assert (tmp_path / "snapshots" / f"snap_iter_{it}.solverstate").is_file()
    assert f"--snapshot {tmp_path / 'snapshots'}/snap_iter_{it}.solverstate" in out


def test_finished_log_has_no_stack_trace(tiny_mars, tmp_path):
    nets = _nets(tmp_path, tiny_mars, 2, 1000, workers=2)
    p = _train_tool(nets["solver"])
    assert p.wait() == 0, p.stdout.read()
    text = (tmp_path / "train.log").read_text()
    assert "Optimization Done." in text
    assert "*** Aborted" not in text and "stack trace" not in text, text[-3000:]
