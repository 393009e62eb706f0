"""One experiment end to end: nets for a config, `caffe train`, features, evaluation.

Shared by tools/train.py, tools/evaluate.py, tools/demo.py, tools/table2.py and the
learning tests, so that all of them train and score a variant the same way.
"""
import os
import re
import subprocess
import sys
import time
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
    """`bin/caffe train -solver ...` with a progress bar; stops at the first NaN loss.

    Caffe writes straight into the log, which is followed here: a pipe could be held open
    by processes the tool leaves behind."""
    cmd = [os.path.join(ROOT, "bin", "caffe"), "train", "-solver", solver]
    if weights:
        cmd += ["-weights", weights]
    if snapshot:
        cmd += ["-snapshot", snapshot]
    env = dict(os.environ, GLOG_minloglevel="0")
    log, state = TrainLog(), {"it": 0}
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
            _parse_line(line, log, state, bar, proc, log_path)
    if proc.returncode != 0:
        raise RuntimeError("caffe train failed (exit %d): %s\n(full log: %s)"
                           % (proc.returncode, failure_reason(log_path), log_path))
    return log


def failure_reason(log_path):
    """The lines of a Caffe log that say why it stopped: Python errors, glog fatals."""
    lines = open(log_path).read().splitlines()
    why = [l for l in lines if re.match(r"^F\d{8} |\w*(Error|Exception): ", l)
           or "Check failed" in l]
    return "\n".join(why[-5:] or lines[-10:])


def _parse_line(line, log, state, bar, proc, log_path):
    m = ITER_RE.search(line)
    if m and "solver.cpp" in line:
        state["it"] = int(m.group(1))
        bar.update(max(0, state["it"] - bar.n))
    m = OUTPUT_RE.search(line)
    if m:
        value = float(m.group(2))
        log.add(state["it"], m.group(1), value)
        if not np.isfinite(value):
            proc.kill()
            proc.wait()
            raise TrainingDiverged("training diverged: %s = %s at iteration %d (log: %s)"
                                   % (m.group(1), m.group(2), state["it"], log_path))


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
    models = load_models(nets, weights, bool(cfg.variant.metric))
    scored = score_mars(dataset, TABLE2_LABELS[cfg.variant.name], models, k, lam,
                        progress=progress)
    return scored.results, scored.meta, scored.features


def evaluate_two_camera(dataset, cfg, nets, weights, k=100, lam=1.0, splits=None, chunks="all",
                        progress=True):
    """Score one trained variant on iLIDS-VID / PRID2011 over the splits (paper 4.1): mean and
    std of CMC and mAP. `weights` is one caffemodel for every split, or a path containing
    "{split}" for one model per split (the paper trains on each split's training half)."""
    metric = bool(cfg.variant.metric)
    lists = two_camera_lists(dataset, splits)
    if SPLIT_FIELD in str(weights):
        paths = split_weights(weights, [s for s, _, _ in lists])
        check_weights(nets, paths.values(), metric)
        models = lambda s: load_models(nets, paths[s], metric)   # noqa: E731  (one at a time)
    else:
        models = load_models(nets, weights, metric)
    scored = score_two_camera(dataset, TABLE2_LABELS[cfg.variant.name], models, k, lam,
                              [s for s, _, _ in lists], chunks, progress)
    return scored.results, scored.meta, scored.features


# ---- scoring, shared by evaluate*, tools/evaluate.py and the tests (paper 4.1, docs/DESIGN.md §5)
SPLIT_FIELD = "{split}"
THUMB_SIZE = (128, 64)          # frames of the figures are read at this (H, W)


@dataclass
class Scored:
    """One variant scored on one dataset.

    results: protocol result dicts (reid.evaluation.protocols); meta: the ranking's metadata
    (rank_variant) plus how features were taken; features: FeatureExtractor output whose
    rows are the tracklets `tids` (two-camera datasets with one model per split: those of
    the first split); lists: per split (MARS: one, split None) the query and gallery
    tracklet ids and the Ranking of the gallery columns, which the figures draw.
    """
    results: list
    meta: dict
    features: dict
    tids: np.ndarray
    lists: list

    def row(self, tid):
        hits = np.flatnonzero(self.tids == tid)
        if hits.size == 0:
            raise ValueError("tracklet %d has no features in this evaluation" % tid)
        return int(hits[0])


def load_models(nets, weights, metric):
    """(FeatureExtractor, MetricScorer or None) of a run's deploy nets and one caffemodel,
    which is checked against each net first (check_weights_fit)."""
    from reid.evaluation.features import FeatureExtractor, MetricScorer
    extractor = FeatureExtractor(nets["deploy_features"], weights)
    scorer = MetricScorer(nets["deploy_metric"], weights) if metric else None
    return extractor, scorer


def check_weights(nets, weights_paths, metric):
    """Every caffemodel exists and fits the deploy nets (before anything long starts)."""
    import caffe
    from reid.evaluation.features import check_weights_fit
    keys = ["deploy_features"] + (["deploy_metric"] if metric else [])
    for key in keys:
        net = caffe.Net(nets[key], caffe.TEST)
        for path in weights_paths:
            check_weights_fit(net, path)


def split_weights(template, splits):
    """{split: caffemodel path} from a path containing "{split}"."""
    return {s: str(template).replace(SPLIT_FIELD, str(s)) for s in splits}


def rank_tracklets(label, feats, q_rows, g_rows, scorer, k, lam, progress=True):
    """The ranking of one Table-2 variant (reid.evaluation.rerank.rank_variant) for query and
    gallery feature rows: d of L2-normalised F, and M from the metric net on the top k by d
    (k <= 0: every pair, the brute-force eq. 2). Variants without F (CNN+DIFF, CNN+SRM) rank
    by M alone; when k covers the gallery they score every pair without d."""
    from reid.evaluation import rerank
    q_rows, g_rows = np.asarray(q_rows), np.asarray(g_rows)
    d = rerank.euclidean_distance(feats["F"][q_rows], feats["F"][g_rows])
    mode = rerank.mode_for_variant(label)
    k = d.shape[1] if k <= 0 else min(int(k), d.shape[1])
    metric_fn = None
    if mode != "distance":
        if scorer is None:
            raise ValueError("variant %s needs the metric net (deploy_metric)" % label)
        metric_fn = scorer.metric_fn(feats["pool5"][q_rows], feats["pool5"][g_rows])
        if mode == "metric" and k == d.shape[1]:
            d = None
    return rerank.rank_variant(label, d, metric_fn, k=k, lam=lam,
                               shape=(q_rows.size, g_rows.size), progress=progress)


def score_mars(dataset, label, models, k=100, lam=1.0, chunks="all", progress=True):
    """MARS: features of every test tracklet, the variant's ranking of all of them for each
    query, the official and common protocols. models: (FeatureExtractor, MetricScorer or
    None); chunks: 'all' (F averaged over the tracklet's T-frame chunks) or 'first'."""
    from reid.evaluation import protocols
    test, queries = dataset.gallery_idx, dataset.query_idx
    if queries.size == 0:
        raise ValueError("%s: the index has no query tracklets" % dataset.folder)
    pos = {int(t): i for i, t in enumerate(test)}
    outside = [int(t) for t in queries if int(t) not in pos]
    if outside:
        raise ValueError("%s: query tracklets %s are not test tracklets" % (dataset.folder,
                                                                             outside[:3]))
    q = np.array([pos[int(t)] for t in queries])
    extractor, scorer = models
    feats = extractor.extract(dataset, test, mode=chunks, progress=progress)
    ranking, meta = rank_tracklets(label, feats, q, np.arange(test.size), scorer, k, lam,
                                   progress)
    meta["chunks"] = chunks
    results = protocols.evaluate_mars(ranking, dataset.pids[test], dataset.cams[test], q,
                                      dataset=dataset.name)
    return Scored(results, meta, feats, test,
                  [dict(split=None, query=queries, gallery=test, ranking=ranking)])


def two_camera_lists(dataset, splits=None):
    """[(split, probe tids, gallery tids)] of iLIDS-VID / PRID2011: probe = the split's test
    persons in the first camera (cam1 / cam_a), gallery = them in the second, as
    dataset.set_split(k) assigns the roles. Everything is checked before any net runs."""
    from reid.evaluation import protocols
    if not dataset.splits:
        raise ValueError("%s: %s has no train/test splits (two-camera datasets have 10)"
                         % (dataset.folder, dataset.name))
    n = len(dataset.splits)
    splits = list(range(n)) if splits is None else [int(s) for s in splits]
    missing = [s for s in splits if not 0 <= s < n]
    if missing or not splits:
        raise ValueError("%s: split(s) %s missing; %s has %d splits (0..%d)"
                         % (dataset.folder, missing, dataset.name, n, n - 1))
    if len(set(splits)) != len(splits):
        raise ValueError("split list %s repeats a split" % splits)
    cams = np.unique(dataset.cams)
    if cams.size != 2:
        raise ValueError("%s: a two-camera dataset, but its tracklets are in cameras %s"
                         % (dataset.folder, cams.tolist()))
    out = []
    for s in splits:
        probe, gallery = protocols.two_camera_split_indices(
            dataset.pids, dataset.cams, np.asarray(dataset.splits[s]["test"]), cams[0], cams[1],
            split=s)
        out.append((s, probe, gallery))
    return out


def score_two_camera(dataset, label, models, k=100, lam=1.0, splits=None, chunks="all",
                     progress=True):
    """iLIDS-VID / PRID2011 over the splits (mean and std, paper 4.1). models: (extractor,
    scorer) for every split (features extracted once for all test tracklets), or a callable
    split -> (extractor, scorer) for one model per split."""
    from reid.evaluation import protocols
    lists = two_camera_lists(dataset, splits)
    shared = not callable(models)
    if shared:
        extractor, scorer = models
        union = np.unique(np.concatenate([np.concatenate([p, g]) for _, p, g in lists]))
        union_feats = extractor.extract(dataset, union, mode=chunks, progress=progress)
    items, entries, first = [], [], None
    for s, probe, gallery in tqdm(lists, desc="splits", unit="split", disable=not progress):
        if shared:
            tids, feats = union, union_feats
        else:
            extractor, scorer = models(s)
            tids = np.concatenate([probe, gallery])
            feats = extractor.extract(dataset, tids, mode=chunks, progress=False)
        row = {int(t): i for i, t in enumerate(tids)}
        ranking, meta = rank_tracklets(label, feats, [row[int(t)] for t in probe],
                                       [row[int(t)] for t in gallery], scorer, k, lam, False)
        items.append((ranking, dataset.pids[probe], dataset.pids[gallery]))
        entries.append(dict(split=s, query=probe, gallery=gallery, ranking=ranking))
        if first is None:
            first = (feats, tids)
    result = protocols.evaluate_two_camera_splits(items, dataset=dataset.name,
                                                  expected_splits=len(items))
    ids = [e["split"] for e in entries]
    for per, s in zip(result["per_split"], ids):      # the protocol numbers them 0..n-1
        per["split"] = s
    result["splits"] = ids
    meta.update(chunks=chunks, splits=ids, weights_per_split=not shared)
    return Scored([result], meta, first[0], first[1], entries)


# ---- figures of an evaluation (docs/DESIGN.md §5: Fig. 9, 10, 1) ---------------------------------
def default_show(scored, n=4):
    """n queries of the first list, evenly spread (tracklet ids)."""
    q = scored.lists[0]["query"]
    return [int(q[i]) for i in np.unique(np.linspace(0, q.size - 1, min(n, q.size)).round()
                                         .astype(int))]


def ranked_list_figure(dataset, scored, query_tids, path, top=10):
    """Fig. 10: per query its frames and the top gallery tracklets (first list), bordered
    right / wrong / distractor (junk skipped, as the official protocol ignores it)."""
    from reid.evaluation import plots
    entry = scored.lists[0]
    qpos = {int(t): i for i, t in enumerate(entry["query"])}
    gallery = entry["gallery"]
    g_pids, g_cams = dataset.pids[gallery], dataset.cams[gallery]
    rows = []
    for tid in query_tids:
        if int(tid) not in qpos:
            raise ValueError("tracklet %d is not a query of %s" % (tid, _list_name(entry)))
        order = entry["ranking"].order[qpos[int(tid)]]
        cols, labels = plots.ranked_list_labels(order, g_pids, g_cams, dataset.pids[tid],
                                                dataset.cams[tid], top_k=top)
        n = dataset.tracklets[tid].num_frames
        query = dataset.read_frames(tid, np.linspace(0, n - 1, min(4, n)).round().astype(int),
                                    THUMB_SIZE)
        shown = [dataset.read_frames(int(g), [dataset.tracklets[int(g)].num_frames // 2],
                                     THUMB_SIZE) for g in gallery[cols]]
        rows.append(plots.ranked_list_image(query, shown, labels))
    plots.ranked_list_figure(rows, path)
    return path


def attention_figure(dataset, scored, tid, path, seq_len, title=None):
    """Fig. 1: the first T frames of a tracklet (the chunk whose TAM weights FeatureExtractor
    keeps) with the attention weights w_{t,i} of every step."""
    from reid.evaluation import plots
    if "attention" not in scored.features:
        raise ValueError("the net has no attention output (no TAM)")
    frames = dataset.read(tid, 0, seq_len, THUMB_SIZE)
    return plots.plot_attention(frames, scored.features["attention"][scored.row(tid)], path,
                                title=title)


def _list_name(entry):
    return "the evaluation" if entry["split"] is None else "split %d" % entry["split"]


def log_tail_to_stderr(path, n=20):
    sys.stderr.write("".join(open(path).readlines()[-n:]))


def synthetic_mars(out_dir, identities=20, seed=1, progress=False, **kw):
    """A synthetic MARS-layout dataset generated and prepared with the real prep tool;
    returns the prepared folder (reused when already there)."""
    from reid.datasets.mars import prepare_mars
    from reid.datasets.synthetic import generate
    prepared = os.path.join(out_dir, "mars")
    if not os.path.exists(os.path.join(prepared, "index.json")):
        source = os.path.join(out_dir, "source")
        generate(source, layout="mars", identities=identities, seed=seed, **kw)
        prepare_mars(source, prepared, progress=progress)
    return prepared
