"""Evaluation: protocols, eq. 2 re-ranking, reports and plots (docs/DESIGN.md §1.3, §5).

Modules
-------
protocols  MARS official kit protocol, MARS common variant, iLIDS-VID / PRID2011 10-split
           protocol (the only place the protocols live); plain NumPy inputs.
hits       the non-junk ranks of each query's good items that the protocols need, without
           a sort of the row (and the full-sort reference).
rerank     S = 1/(1+d) + lambda*M (paper eq. 2) on the top K by d (d: reid.ops.distance).
feature_store  F, every chunk's pool5 and TAM weights of a run's tracklets in one HDF5
           file, with the identity (content hashes) of the weights, nets and dataset.
search     FAISS index of F for galleries beyond memory, top K by d, eq. 2 (tools/search.py).
report     result dicts -> Table-2/3-shaped text, CSV, JSON.
plots      CMC curves (Fig. 9), ranked lists (Fig. 10), attention weights (Fig. 1), losses.
score      the one scoring of a trained run: features, the variant's ranking, protocols.
diagnostics  chance levels, feature spread, TAM weights on degraded frames (synthetic studies).

Feature extraction from Caffe nets lives in ``features.py`` (imported on demand, it needs
pycaffe): ``FeatureExtractor`` gives F(x) per tracklet (chunks of T frames, averaged), the
pool5 volumes and the TAM weights w_{t,i} (for :func:`plots.plot_attention`);
``MetricScorer`` is the ``metric_fn(q_idx, g_idx) -> M`` of :class:`rerank.MetricFn` (SRM
probabilities for batches of (query row, gallery column) pairs of the distance matrix).
Everything else here takes plain NumPy arrays.

Typical use (MARS)::

    d = rerank.euclidean_distance(F[query_idx], F)          # (1980, 12180)
    ranking = rerank.rerank(d, metric_fn, k=100, lam=1.0, mode="joint")
    results = protocols.evaluate_mars(ranking, pids, cams, query_idx)
    report.write_reports([report.make_run("ALL", results, k=100, lam=1.0)], out_dir)
"""
from . import plots, protocols, report, rerank  # noqa: F401  (matplotlib loads lazily)
from .protocols import (EvaluationInputError, evaluate_mars, evaluate_mars_common,  # noqa: F401
                        evaluate_mars_official, evaluate_two_camera,
                        evaluate_two_camera_splits)
from .rerank import Ranking, euclidean_distance, rerank as rerank_topk, similarity  # noqa: F401
