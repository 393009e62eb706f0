"""A training run: its folder, `bin/caffe train`, its logs and snapshots, resuming.

A run folder holds the generated train_val / deploy_features / deploy_metric / solver
prototxts (write_nets), train.log (train.log.1, .2, ... of earlier parts when resumed) and
snapshots/snap_iter_N.caffemodel / .solverstate.
"""
import glob
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from reid.nets.config import VARIANTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITER_RE = re.compile(r"Iteration (\d+)")
OUTPUT_RE = re.compile(r"Train net output #\d+: (\w+) = ([-+\w.]+)")
SNAP_RE = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)$")
NAME_RE = re.compile(r'^name:\s*"([^"]*)"', re.M)


class TrainingDiverged(RuntimeError):
    pass


class RunError(ValueError):
    """A run folder lacks what is asked of it; the message names the file."""


@dataclass
class TrainLog:
    iterations: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)     # name -> values at the display iterations

    def add(self, it, name, value):
        if not self.iterations or self.iterations[-1] != it:
            self.iterations.append(it)
        self.outputs.setdefault(name, []).append(value)


def write_nets(cfg, run_dir, schedule):
    """The run's train_val / deploy / solver files (from the one generator; schedule: a
    reid.nets.config.Schedule); returns {name: path}."""
    from reid.nets.generate import files_for, write      # pycaffe's NetSpec
    paths = files_for(cfg, run_dir, os.path.join(run_dir, "snapshots"), schedule)
    for path, text in paths.items():
        write(path, text)
    return {os.path.basename(p).split(".")[0]: p for p in paths}


# ---- the log ------------------------------------------------------------------------------
def _reading(line, it):
    """(iteration, (output name, value string) or None) after one log line."""
    m = ITER_RE.search(line)
    if m and "solver.cpp" in line:
        it = int(m.group(1))
    m = OUTPUT_RE.search(line)
    return it, (m.group(1), m.group(2)) if m else None


def parse_logs(paths):
    """The losses of one or more `caffe train` logs (a resumed run has several), in order."""
    readings = []                 # (iteration, output name, value)
    for path in paths:
        part, it = [], 0
        for line in open(path, errors="replace"):
            it, out = _reading(line, it)
            if out:
                part.append((it, out[0], float(out[1])))
        if part:                  # a resumed part repeats the snapshot's iteration: keep it once
            readings = [r for r in readings if r[0] < part[0][0]] + part
    log = TrainLog()
    for it, name, value in readings:
        log.add(it, name, value)
    return log


def failure_reason(log_path, start=0):
    """The lines of a Caffe log (from byte `start`: the last part of a resumed run's log) that
    say why it stopped: Python errors, glog fatals, bin/caffe's checks."""
    with open(log_path, errors="replace") as f:
        f.seek(start)
        lines = f.read().splitlines()
    why = [l for l in lines if re.match(r"^F\d{8} |\w*(Error|Exception): |error: ", l)
           or "Check failed" in l]
    return "\n".join(why[-5:] or lines[-10:])


# ---- training -----------------------------------------------------------------------------
class TrainingStopped(RuntimeError):
    """Caffe stopped before max_iter: a SIGINT or SIGHUP to it makes it snapshot and exit 0."""

    def __init__(self, it, max_iter, solverstate, log_path):
        self.it, self.max_iter, self.solverstate = it, max_iter, solverstate
        super().__init__("caffe stopped early at iteration %d of %d (log: %s)%s"
                         % (it, max_iter, log_path, "; resume with --snapshot %s" % solverstate
                            if solverstate else ""))


def train(solver, log_path, max_iter, weights=None, snapshot=None, progress=True, cwd=None):
    """`bin/caffe train -solver ...` with a progress bar; stops at the first NaN loss.

    Caffe writes straight into the log, which is followed here: a pipe could be held open
    by processes the tool leaves behind. A resumed run appends to the log. Every complete
    snapshot gets its record and a snapshot cut short by a failure is deleted
    (reid.integrity.SnapshotWatcher). TrainingStopped when Caffe stops before max_iter."""
    from reid.integrity import SnapshotWatcher, run_datasets
    notes = check_inputs(solver, weights, snapshot, cwd)
    cmd = [os.path.join(ROOT, "bin", "caffe"), "train", "-solver", solver]
    if weights:
        cmd += ["-weights", weights]
    if snapshot:
        cmd += ["-snapshot", snapshot]
    env = dict(os.environ, GLOG_minloglevel="0", REID_INPUTS_CHECKED="1")
    watcher = SnapshotWatcher(run_datasets(solver, cwd), cwd)
    log, it, stopped = TrainLog(), 0, False
    with open(log_path, "a" if snapshot else "w") as out:
        start = out.tell()
        if snapshot:                  # keep the readings before the resume point
            out.write("==== resumed from %s ====\n" % snapshot)
        out.write("".join(n + "\n" for n in notes))
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    with open(log_path) as f, tqdm(total=max_iter, desc="train", unit="it",
                                   disable=not progress) as bar:
        f.seek(start)
        while True:
            line = f.readline()
            if not line:
                if proc.poll() is not None and not (line := f.readline()):
                    break
                if not line:
                    time.sleep(0.2)
                    continue
            watcher.line(line)
            stopped = stopped or "Optimization stopped early" in line
            it, out = _reading(line, it)
            if it > bar.n:
                bar.update(it - bar.n)
            if out:
                _record(log, it, out, proc, log_path, watcher)
    _finish(proc, watcher, log_path, start)
    if stopped:
        state = watcher.last_state()
        at = int(SNAP_RE.search(state).group(1)) if state and SNAP_RE.search(state) else it
        raise TrainingStopped(at, max_iter, state, log_path)
    return log


def check_inputs(solver, weights=None, snapshot=None, cwd=None):
    """bin/caffe's checks of -weights and -snapshot (reid.integrity), before anything starts:
    IntegrityError naming the file; returns notes (e.g. a copied run's weights path fixed)."""
    from reid.integrity import check_resume, check_weights_file
    for w in filter(None, (weights or "").split(",")):
        check_weights_file(w)
    return check_resume(snapshot, solver, cwd) if snapshot else []


def _finish(proc, watcher, log_path, start):
    """Record the last snapshot of a clean exit; after a failure delete a partial one."""
    if proc.returncode == 0:
        watcher.finish()
        return
    from reid.outputs import disk_full_note
    full = disk_full_note(watcher.writing[0]) if watcher.writing else ""
    partial = watcher.discard_partial()
    watcher.write_records()                   # those the full disk held back
    why = failure_reason(log_path, start)
    if partial:
        why = "writing the snapshot %s failed%s; its partial files were deleted\n%s" % (
            partial[0], full, why)
    raise RuntimeError("caffe train failed (exit %d): %s\n(full log: %s)"
                       % (proc.returncode, why, log_path))


def _record(log, it, out, proc, log_path, watcher):
    value = float(out[1])
    log.add(it, out[0], value)
    if not np.isfinite(value):
        proc.kill()
        proc.wait()
        watcher.discard_partial()
        raise TrainingDiverged("training diverged: %s = %s at iteration %d (log: %s)"
                               % (out[0], out[1], it, log_path))


def snapshots(run_dir, kind):
    """{iteration: path} of the run's snapshots of one kind (caffemodel / solverstate)."""
    out = {}
    for p in glob.glob(os.path.join(run_dir, "snapshots", "*." + kind)):
        m = SNAP_RE.search(p)
        if m:
            out[int(m.group(1))] = p
    return out


def train_logs(run_dir):
    """The run's logs, oldest first: train.log.1, train.log.2, ... (resumed parts), train.log."""
    parts = sorted(glob.glob(os.path.join(run_dir, "train.log.*")),
                   key=lambda p: int(p.rsplit(".", 1)[1]))
    last = os.path.join(run_dir, "train.log")
    return parts + ([last] if os.path.isfile(last) else [])


def train_or_resume(run_dir, solver, iters, resume=False, progress=True, note=print,
                    weights=None):
    """Train the run folder's solver to `iters`, from the caffemodel `weights` (`caffe train
    -weights`: the pretrained trunk of reid.pretrain, or a MARS model to fine-tune): a
    finished run is reused, an interrupted one continues from its last snapshot with
    `resume` (else starts over). note(text) says what happens, and warns when F collapsed
    (collapse_warning). Returns (weights, TrainLog of every part, whether training ran)."""
    run_dir = str(run_dir)
    final = snapshots(run_dir, "caffemodel").get(iters)
    if final:
        return final, parse_logs(train_logs(run_dir)), False
    states = snapshots(run_dir, "solverstate")
    snapshot = None
    if states and resume:
        from reid.integrity import latest_resumable
        it, skipped = latest_resumable(states)
        for text in skipped:
            note(text)
        if it is None:
            raise RunError("%s/snapshots: no complete snapshot to resume from" % run_dir)
        snapshot = states[it]
        note("resuming from iteration %d (%s)" % (it, snapshot))
        n = len(train_logs(run_dir))
        if os.path.isfile(os.path.join(run_dir, "train.log")):
            os.replace(os.path.join(run_dir, "train.log"),
                       os.path.join(run_dir, "train.log.%d" % n))
    else:
        if states:
            note("an interrupted training (up to iteration %d) is restarted; pass --resume "
                 "to continue it instead" % max(states))
        _clear_training(run_dir)
    note("log: %s" % os.path.join(run_dir, "train.log"))
    train(solver, os.path.join(run_dir, "train.log"), iters, snapshot=snapshot,
          weights=None if snapshot else weights, progress=progress)
    final = snapshots(run_dir, "caffemodel").get(iters)
    if not final:
        raise RuntimeError("training ended without %s/snapshots/*_iter_%d.caffemodel"
                           % (run_dir, iters))
    log = parse_logs(train_logs(run_dir))
    warning = collapse_warning(log, triplet_margin(solver))
    if warning:
        note(warning)
    return final, log, True


MARGIN_RE = re.compile(r'margin\\?"\s*:\s*([0-9.eE+-]+)')     # in an escaped param_str
NET_RE = re.compile(r'^\s*net:\s*"([^"]+)"', re.M)


PREFIX_RE = re.compile(r'^\s*snapshot_prefix:\s*"([^"]+)"', re.M)


def default_log(solver):
    """Where a training of `solver` logs: train.log where its snapshots go (work/<dataset>/
    <variant>/ for the committed solvers, never the committed prototxt/ folder; a run folder
    for write_nets' RUN/snapshots/), else beside the solver."""
    m = PREFIX_RE.search(open(solver).read())
    if not m:
        return os.path.join(os.path.dirname(os.path.abspath(solver)), "train.log")
    folder = os.path.dirname(m.group(1))
    if os.path.basename(folder) == "snapshots":
        folder = os.path.dirname(folder)
    return os.path.join(folder or ".", "train.log")


def triplet_margin(solver, default=0.3):
    """The triplet loss margin of a solver's train net (its param_str; docs/DESIGN.md §1.3)."""
    m = NET_RE.search(open(solver).read())
    if not (m and os.path.isfile(m.group(1))):     # paths are relative to where caffe runs
        return default
    found = MARGIN_RE.search(open(m.group(1)).read())
    return float(found.group(1)) if found else default


def collapse_warning(log, margin, tol=0.005):
    """A warning when the triplet loss sat at its margin over the last quarter of the
    readings (at least 3): every anchor is as far from its positive as from the hardest
    negative, i.e. F has collapsed to one point and ranks at chance, whatever 'done' says
    (docs/TABLE2.md: a too large learning rate saturates the TAM's LSTM). None otherwise."""
    values = log.outputs.get("triplet_loss") or []
    tail = max(3, len(values) // 4)
    if len(values) < tail or any(abs(v - margin) > tol for v in values[-tail:]):
        return None
    first = len(values) - tail
    while first > 0 and abs(values[first - 1] - margin) <= tol:
        first -= 1
    return ("warning: the triplet loss has sat at its margin %g since iteration %d (last "
            "reading %.4f): F has collapsed to one point and ranks no better than chance; "
            "train with a smaller base_lr" % (margin, log.iterations[first], values[-1]))


def _clear_training(run_dir):
    """Before training from scratch: delete the run's snapshots and logs, which only a run
    folder the project wrote (reid.outputs marker, set by the pipeline) may hold."""
    from reid.outputs import OutputError, written_by
    logs, snaps = train_logs(run_dir), os.path.join(run_dir, "snapshots")
    if (logs or os.path.exists(snaps)) and written_by(run_dir) is None:
        raise OutputError("%s: not a run folder written by this project (no marker); refusing "
                          "to delete its snapshots/ and train.log*" % run_dir)
    shutil.rmtree(snaps, ignore_errors=True)
    for p in logs:
        os.remove(p)


# ---- reading a run folder -----------------------------------------------------------------
def run_nets(run):
    """({deploy_features: path[, deploy_metric: path]}, the variant name the features net
    names (`<variant>_features`) or None) of a run folder."""
    run = str(run)
    if not os.path.isdir(run):
        raise RunError("%s: run folder not found" % run)
    feats = os.path.join(run, "deploy_features.prototxt")
    if not os.path.isfile(feats):
        raise RunError("%s: not found (the run folder must hold the deploy nets that "
                       "reid.run.write_nets writes)" % feats)
    m = NAME_RE.search(open(feats).read())
    variant = m.group(1)[:-len("_features")] if m and m.group(1).endswith("_features") else None
    if variant is not None and variant not in VARIANTS:
        raise RunError("%s names variant %r; known: %s" % (feats, variant, sorted(VARIANTS)))
    nets = {"deploy_features": feats}
    metric = os.path.join(run, "deploy_metric.prototxt")
    if os.path.isfile(metric):
        nets["deploy_metric"] = metric
    return nets, variant


def newest_caffemodel(run):
    """The caffemodel of the highest iteration (then the newest) in RUN or RUN/snapshots."""
    found = [p for folder in (run, os.path.join(run, "snapshots"))
             for p in glob.glob(os.path.join(folder, "*.caffemodel"))]
    if not found:
        raise RunError("no .caffemodel in %s or %s/snapshots; pass --weights" % (run, run))

    def key(path):
        m = SNAP_RE.search(path)
        return (int(m.group(1)) if m else -1, os.path.getmtime(path))
    return max(found, key=key)
