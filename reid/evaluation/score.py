"""Scoring a trained run: the one path from deploy nets and a caffemodel to protocol results
(paper 4.1, eq. 2; docs/DESIGN.md §1.3 and §5). tools/evaluate.py, tools/demo.py, tools/table2.py
and the tests all score through :func:`score_run` (or, with their own models, through
:func:`score_mars` / :func:`score_two_camera`).

Features: F of a tracklet averaged over its T-frame chunks ('all') or its first chunk
('first'). Ranking: the variant's mode (reid.nets.config.Variant.mode) with
reid.evaluation.rerank. Protocols: MARS official kit and common variant; iLIDS-VID and
PRID2011 probe cam1 / cam_a against gallery cam2 / cam_b over each split's test persons.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from reid.ops.distance import euclidean_distance

from . import protocols, rerank

SPLIT_FIELD = "{split}"          # a caffemodel path with it names one model per split
TWO_CAMERA = ("ilidsvid", "prid2011")


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


def rank_variant(variant, d=None, metric_fn=None, shape=None, **kw):
    """Rank one Table 2 variant the way every variant is scored (variant.mode): metric-only
    variants rank every gallery item by M (rerank.metric_ranking; d is not used, shape =
    (n_query, n_gallery)), the others through rerank.rerank with d.

    Returns (Ranking, meta) where meta (variant label, mode, k, lambda, preselected_by_d)
    is meant for the run's metadata (report.make_run). ``kw`` go to rerank.rerank.
    """
    if variant.mode == "metric":
        if shape is None:
            shape = d.shape
        ranking = rerank.metric_ranking(metric_fn, *shape, **kw)
    else:
        ranking = rerank.rerank(d, metric_fn, mode=variant.mode, shape=shape, **kw)
    meta = {"variant": variant.label, "mode": variant.mode, "k": ranking.k,
            "lambda": ranking.lam, "preselected_by_d": False}
    return ranking, meta


# ---- models -----------------------------------------------------------------------------
def load_models(nets, weights, metric, features=None, split=-1, re_extract=False):
    """(extractor, MetricScorer or None) of a run's deploy nets and one caffemodel, which
    is checked against each net first (check_weights_fit). The extractor: run_features."""
    from reid.evaluation.features import MetricScorer
    scorer = MetricScorer(nets["deploy_metric"], weights) if metric else None
    return run_features(nets, weights, metric, features, split, re_extract), scorer


def run_features(nets, weights, metric, path=None, split=-1, re_extract=False):
    """Features of this run, from file or extracted: a FeatureExtractor, or with ``path``
    a reid.evaluation.feature_store.StoredFeatures that reads that file when it holds
    features of these weights, nets and data (pool5 only for the SRM: ``metric``) and
    otherwise extracts (loading the trunk only then) and writes it."""
    from reid.evaluation.features import FeatureExtractor

    def make():
        return FeatureExtractor(nets["deploy_features"], weights)
    if path is None:
        return make()
    from reid.evaluation.feature_store import ARRAYS, StoredFeatures
    arrays = ARRAYS if metric else tuple(a for a in ARRAYS if a != "pool5")
    return StoredFeatures(path, weights, {"deploy_features": nets["deploy_features"]}, make,
                          split, re_extract, arrays)


def split_path(path, split):
    """``path`` of one split: "{split}" replaced; None stays None."""
    return None if path is None else str(path).replace(SPLIT_FIELD, str(split))


def check_weights(nets, weights_paths, metric):
    """Every caffemodel exists and fits the deploy nets (before anything long starts)."""
    import caffe
    from reid.evaluation.features import check_weights_fit
    keys = ["deploy_features"] + (["deploy_metric"] if metric else [])
    for key in keys:
        net = caffe.Net(nets[key], caffe.TEST)
        for path in weights_paths:
            check_weights_fit(net, path)


def resolve_weights(weights, splits):
    """{split: path} for a path containing "{split}" (one model per split), else {None:
    path}; every file must exist."""
    weights = str(weights)
    if SPLIT_FIELD in weights:
        if not splits:
            raise ValueError("%s: one caffemodel per split, but the dataset has no splits"
                             % weights)
        paths = {s: weights.replace(SPLIT_FIELD, str(s)) for s in splits}
    else:
        paths = {None: weights}
    missing = [s for s, p in paths.items() if not os.path.isfile(p)]
    if missing == [None]:
        raise ValueError("caffemodel not found: %s" % weights)
    if missing:
        present = [s for s in paths if s not in missing]
        raise ValueError(
            "caffemodel not found for %d of %d splits: %s (%s)%s" % (
                len(missing), len(paths), ", ".join(map(str, missing)),
                ", ".join(paths[s] for s in missing[:3]) + (", ..." if len(missing) > 3
                                                             else ""),
                "; to evaluate the splits that have one: --splits %s"
                % ",".join(map(str, present)) if present else ""))
    return paths


def score_run(dataset, variant, nets, weights, k=100, lam=1.0, splits=None, chunks="all",
              progress=True, features=None, re_extract=False):
    """Score a trained run of `variant` (reid.nets.config.Variant) on a prepared dataset:
    MARS layout through score_mars, iLIDS-VID / PRID2011 over their splits (paper 4.1)
    through score_two_camera. nets: {deploy_features[, deploy_metric]: prototxt};
    weights: one caffemodel, or a path containing "{split}" for one model per split (the
    paper trains on each split's training half). features: a feature file to read or
    write (run_features; with "{split}" in weights, "{split}" in it too)."""
    metric = bool(variant.metric)
    if dataset.name not in TWO_CAMERA:
        if splits is not None:
            raise ValueError("splits: %s has one official split" % dataset.name)
        paths = resolve_weights(weights, [])
        models = load_models(nets, paths[None], metric, features, -1, re_extract)
        return score_mars(dataset, variant, models, k, lam, chunks, progress)
    splits = [s for s, _, _ in two_camera_lists(dataset, splits)]
    paths = resolve_weights(weights, splits)
    if None in paths:
        models = load_models(nets, paths[None], metric, features, -1, re_extract)
    else:
        if features is not None and SPLIT_FIELD not in str(features):
            raise ValueError("%s: one caffemodel per split, so one feature file per split: "
                             "the path needs %s" % (features, SPLIT_FIELD))
        check_weights(nets, paths.values(), metric)
        models = lambda s: load_models(nets, paths[s], metric,  # noqa: E731  (one at a time)
                                       split_path(features, s), s, re_extract)
    return score_two_camera(dataset, variant, models, k, lam, splits, chunks, progress)


# ---- rankings and protocols -------------------------------------------------------------
def rank_tracklets(variant, feats, q_rows, g_rows, scorer, k, lam, progress=True):
    """The ranking of one Table-2 variant (rank_variant) for query and gallery feature rows
    of `feats` (FeatureExtractor.extract). M of two tracklets is averaged over their aligned
    chunk pairs, the chunks F averages (features.chunk_pair_metric), for every variant.
    ALL: d of L2-normalised F, eq. 2 on the top k by d (k <= 0: every pair, the brute-force
    eq. 2). CNN+DIFF and CNN+SRM train no F: every gallery item is ranked by M
    (rerank.metric_ranking), whatever k."""
    q_rows, g_rows = np.asarray(q_rows), np.asarray(g_rows)
    metric_fn = None
    if variant.mode != "distance":
        if scorer is None:
            raise ValueError("variant %s needs the metric net (deploy_metric)" % variant.label)
        metric_fn = scorer.chunk_metric_fn(feats, q_rows, g_rows)
    if variant.mode == "metric":
        return rank_variant(variant, None, metric_fn, shape=(q_rows.size, g_rows.size),
                            progress=progress)
    d = euclidean_distance(feats["F"][q_rows], feats["F"][g_rows])
    k = d.shape[1] if k <= 0 else min(int(k), d.shape[1])
    return rank_variant(variant, d, metric_fn, k=k, lam=lam, progress=progress)


def score_mars(dataset, variant, models, k=100, lam=1.0, chunks="all", progress=True):
    """MARS: features of every test tracklet, the variant's ranking of all of them for each
    query, the official and common protocols. models: (FeatureExtractor, MetricScorer or
    None); chunks: 'all' (F averaged over the tracklet's T-frame chunks) or 'first'."""
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
    ranking, meta = rank_tracklets(variant, feats, q, np.arange(test.size), scorer, k, lam,
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


def score_two_camera(dataset, variant, models, k=100, lam=1.0, splits=None, chunks="all",
                     progress=True):
    """iLIDS-VID / PRID2011 over the splits (mean and std, paper 4.1). models: (extractor,
    scorer) for every split (features extracted once for all test tracklets), or a callable
    split -> (extractor, scorer) for one model per split."""
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
        ranking, meta = rank_tracklets(variant, feats, [row[int(t)] for t in probe],
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
