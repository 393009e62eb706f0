"""One experiment end to end: nets for a config, `caffe train`, features, evaluation.

Shared by tools/train.py, tools/evaluate.py, tools/demo.py, tools/table2.py and the
learning tests, so that all of them train and score a variant the same way.
"""
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from reid.nets.config import TABLE2_LABELS
from reid.nets.generate import files_for, write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITER_RE = re.compile(r"Iteration (\d+)")
OUTPUT_RE = re.compile(r"Train net output #\d+: (\w+) = ([-+\w.]+)")


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class TrainLog:
    iterations: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)     # name -> values at the display iterations

    def add(self, it, name, value):
        if not self.iterations or self.iterations[-1] != it:
            self.iterations.append(it)
        self.outputs.setdefault(name, []).append(value)


def write_nets(cfg, run_dir, schedule):
    """The run's train_val / deploy / solver files (from the one generator); returns paths."""
    paths = files_for(cfg, run_dir, os.path.join(run_dir, "snapshots"), schedule)
    for path, text in paths.items():
        write(path, text)
    return {os.path.basename(p).split(".")[0]: p for p in paths}


def train(solver, log_path, max_iter, weights=None, snapshot=None, progress=True, cwd=None):
    """`bin/caffe train -solver ...` with a progress bar; stops at the first NaN loss."""
    cmd = [os.path.join(ROOT, "bin", "caffe"), "train", "-solver", solver]
    if weights:
        cmd += ["-weights", weights]
    if snapshot:
        cmd += ["-snapshot", snapshot]
    env = dict(os.environ, GLOG_minloglevel="0")
    log = TrainLog()
    it = 0
    with open(log_path, "w") as f, tqdm(total=max_iter, desc="train", unit="it",
                                        disable=not progress) as bar:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=cwd)
        for line in proc.stdout:
            f.write(line)
            m = ITER_RE.search(line)
            if m and "solver.cpp" in line:
                it = int(m.group(1))
                bar.update(max(0, it - bar.n))
            m = OUTPUT_RE.search(line)
            if m:
                value = float(m.group(2))
                log.add(it, m.group(1), value)
                if not np.isfinite(value):
                    proc.kill()
                    proc.wait()
                    raise TrainingDiverged("training diverged: %s = %s at iteration %d (log: %s)"
                                           % (m.group(1), m.group(2), it, log_path))
        if proc.wait() != 0:
            tail = open(log_path).read().splitlines()[-25:]
            raise RuntimeError("caffe train failed (exit %d); last lines of %s:\n%s"
                               % (proc.returncode, log_path, "\n".join(tail)))
    return log


def plot_losses(log, path, title=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in sorted(log.outputs.items()):
        if name.endswith("loss"):
            ax.plot(log.iterations[:len(values)], values, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title(title or "training losses")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate(dataset, cfg, nets, weights, k=100, lam=1.0, progress=True):
    """Score one trained variant on a MARS-layout dataset (official and common protocols),
    the way every variant is scored (reid.evaluation.rerank.rank_variant)."""
    from reid.evaluation import protocols, rerank
    from reid.evaluation.features import FeatureExtractor, MetricScorer
    test = dataset.gallery_idx
    feats = FeatureExtractor(nets["deploy_features"], weights).extract(dataset, test,
                                                                       progress=progress)
    pos = {int(t): i for i, t in enumerate(test)}
    q = np.array([pos[int(t)] for t in dataset.query_idx])
    d = rerank.euclidean_distance(feats["F"][q], feats["F"])
    metric_fn = None
    if cfg.variant.metric:
        scorer = MetricScorer(nets["deploy_metric"], weights)
        metric_fn = scorer.metric_fn(feats["pool5"][q], feats["pool5"])
    label = TABLE2_LABELS[cfg.variant.name]
    ranking, meta = rerank.rank_variant(label, d, metric_fn, k=k, lam=lam, progress=progress)
    pids, cams = dataset.pids[test], dataset.cams[test]
    results = protocols.evaluate_mars(ranking, pids, cams, q, dataset=dataset.name)
    return results, meta, feats


def log_tail_to_stderr(path, n=20):
    sys.stderr.write("".join(open(path).readlines()[-n:]))
