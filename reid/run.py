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


def failure_reason(log_path):
    """The lines of a Caffe log that say why it stopped: Python errors, glog fatals."""
    lines = open(log_path).read().splitlines()
    why = [l for l in lines if re.match(r"^F\d{8} |\w*(Error|Exception): ", l)
           or "Check failed" in l]
    return "\n".join(why[-5:] or lines[-10:])


# ---- training -----------------------------------------------------------------------------
def train(solver, log_path, max_iter, weights=None, snapshot=None, progress=True, cwd=None):
    """`bin/caffe train -solver ...` with a progress bar; stops at the first NaN loss.

    Caffe writes straight into the log, which is followed here: a pipe could be held open
    by processes the tool leaves behind."""
    cmd = [os.path.join(ROOT, "bin", "caffe"), "train", "-solver", solver]
    if weights:
        cmd += ["-weights", weights]
    if snapshot:
        cmd += ["-snapshot", snapshot]
    env = dict(os.environ, GLOG_minloglevel="0")
    log, it = TrainLog(), 0
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    with open(log_path) as f, tqdm(total=max_iter, desc="train", unit="it",
                                   disable=not progress) as bar:
        while True:
            line = f.readline()
            if not line:
                if proc.poll() is not None and not (line := f.readline()):
                    break
                if not line:
                    time.sleep(0.2)
                    continue
            it, out = _reading(line, it)
            if it > bar.n:
                bar.update(it - bar.n)
            if out:
                _record(log, it, out, proc, log_path)
    if proc.returncode != 0:
        raise RuntimeError("caffe train failed (exit %d): %s\n(full log: %s)"
                           % (proc.returncode, failure_reason(log_path), log_path))
    return log


def _record(log, it, out, proc, log_path):
    value = float(out[1])
    log.add(it, out[0], value)
    if not np.isfinite(value):
        proc.kill()
        proc.wait()
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
    """Train the run folder's solver to `iters`: a finished run is reused, an interrupted one
    continues from its last snapshot with `resume` (else starts over, from `weights` when
    given: `caffe train -weights`, e.g. the pretrained trunk of reid.pretrain). note(text)
    says what happens. Returns (weights, TrainLog of every part, whether training ran)."""
    run_dir = str(run_dir)
    final = snapshots(run_dir, "caffemodel").get(iters)
    if final:
        return final, parse_logs(train_logs(run_dir)), False
    states = snapshots(run_dir, "solverstate")
    snapshot = None
    if states and resume:
        snapshot = states[max(states)]
        note("resuming from iteration %d (%s)" % (max(states), snapshot))
        n = len(train_logs(run_dir))
        if os.path.isfile(os.path.join(run_dir, "train.log")):
            os.replace(os.path.join(run_dir, "train.log"),
                       os.path.join(run_dir, "train.log.%d" % n))
    else:
        if states:
            note("an interrupted training (up to iteration %d) is restarted; pass --resume "
                 "to continue it instead" % max(states))
        shutil.rmtree(os.path.join(run_dir, "snapshots"), ignore_errors=True)
        for p in train_logs(run_dir):
            os.remove(p)
    note("log: %s" % os.path.join(run_dir, "train.log"))
    train(solver, os.path.join(run_dir, "train.log"), iters, snapshot=snapshot,
          weights=None if snapshot else weights, progress=progress)
    final = snapshots(run_dir, "caffemodel").get(iters)
    if not final:
        raise RuntimeError("training ended without %s/snapshots/*_iter_%d.caffemodel"
                           % (run_dir, iters))
    return final, parse_logs(train_logs(run_dir)), True


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
