#!/usr/bin/env python
"""Evaluate a trained run on a prepared dataset (paper 4.1, eq. 2; docs/DESIGN.md §1.3 and §5).

    bin/python tools/evaluate.py --dataset data/mars --run work/mars/all \\
        [--weights work/mars/all/snapshots/snap_iter_40000.caffemodel] [--variant all] \\
        [-k 100] [--lam 1] [--first-t] [--splits 0,1,...] [--show 4 | --show-tids 12,40] \\
        [--top 10] [--out DIR] [--name ALL] [--features FILE.h5] [--re-extract]

The run folder holds deploy_features.prototxt (and deploy_metric.prototxt for variants with a
metric model) as reid.run.write_nets writes them; the variant is read from the
prototxt's name (`<variant>_features`). Without --weights the caffemodel with the highest
iteration in RUN/ or RUN/snapshots/ is used. For iLIDS-VID / PRID2011, --weights may contain
"{split}" (one model per split, as the paper trains on each split's training half); one
model for every split is also accepted (e.g. a MARS model tested across datasets).

Features: F of a tracklet is averaged over its chunks of T frames (--first-t: its first T
frames only). Scoring (reid.evaluation.score.score_run): variants without a metric model
rank by d; ALL re-scores the top k by d with eq. 2, S = 1/(1+d) + lambda*M; CNN+DIFF and
CNN+SRM rank by M alone (the top k by d of their untrained F, every pair when k covers the
gallery); -k 0 scores every pair. Protocols: MARS official kit and common variant; iLIDS-VID
and PRID2011 probe cam1/cam_a against gallery cam2/cam_b over each split's test persons,
mean and std over the splits.

Feature files (reid/evaluation/feature_store.py): F, the pool5 of every chunk the SRM
re-scores and the TAM weights are written once per (weights, nets, dataset[, split]) to
--features, by default WEIGHTS_DIR/features/<weights name>.<dataset>[.first-t][.split{split}].h5,
and read back by every later evaluation (another -k, --lam, --out) instead of extracting
again; a file from other weights, nets, data or chunk mode (--first-t) is refused,
--re-extract overwrites it (also a file of an older format version).

Writes to --out (default: eval_<dataset>_<weights name> beside the weights, or beside the
split folders of "{split}" weights): results.txt (Table-2/3-shaped), results.csv,
results.json (every number, per query and per split), cmc.png (Fig. 9),
ranked_lists.png (Fig. 10, real frames: green right, red wrong, blue distractor) and, when
the net has a TAM, attention_<tid>.png (Fig. 1) for the first query shown.
Everything that can be checked (files, variant, caffemodel vs deploy nets, splits, queries)
is checked before features are extracted.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("GLOG_minloglevel", "2")   # Caffe's per-layer set-up log, unless asked

from reid import run as runs  # noqa: E402
from reid.argtypes import finite_float, int_at_least  # noqa: E402
from reid.datasets import open_dataset  # noqa: E402
from reid.evaluation import plots, report, score  # noqa: E402
from reid.nets.config import VARIANTS  # noqa: E402


class EvaluateError(ValueError):
    """Bad input to the tool, found before any long computation."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--dataset", required=True, type=Path, help="prepared dataset folder")
    p.add_argument("--run", required=True, type=Path,
                   help="run folder with deploy_features[/deploy_metric].prototxt")
    p.add_argument("--weights", default=None,
                   help="caffemodel (may contain {split}); default: newest in the run folder")
    p.add_argument("--variant", default=None, choices=sorted(VARIANTS),
                   help="Table 2 variant (default: from the deploy_features name)")
    p.add_argument("-k", "--k", type=int_at_least(0, "scores every pair"), default=100,
                   help="re-scored list length per query (eq. 2); 0 = every pair")
    p.add_argument("--lam", type=finite_float, default=1.0, help="lambda of eq. 2")
    p.add_argument("--first-t", action="store_true",
                   help="F from the first T frames instead of the mean over T-frame chunks")
    p.add_argument("--splits", default=None,
                   help="iLIDS-VID / PRID2011: comma-separated split ids (default: all)")
    p.add_argument("--show", type=int_at_least(0), default=4,
                   help="queries drawn in ranked_lists.png, evenly spread (default 4)")
    p.add_argument("--show-tids", default=None,
                   help="comma-separated query tracklet ids to draw instead of --show")
    p.add_argument("--top", type=int_at_least(1), default=10,
                   help="gallery items per ranked list")
    p.add_argument("--out", type=Path, default=None, help="output folder")
    p.add_argument("--features", default=None,
                   help="feature file (HDF5) to read, or to write when absent (with {split} "
                        "in --weights: {split} in it too); default: WEIGHTS_DIR/features/"
                        "<weights name>.<dataset>[.first-t][.split{split}].h5")
    p.add_argument("--re-extract", action="store_true",
                   help="extract again and overwrite the feature file")
    p.add_argument("--name", default=None, help="row label (default: the Table 2 label)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _int_list(text, what):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EvaluateError("%s: expected comma-separated integers, got %r" % (what, text))


def resolve_variant(named, asked, nets):
    if named is None and asked is None:
        raise EvaluateError("%s has no name '<variant>_features'; pass --variant"
                            % nets["deploy_features"])
    if asked is not None and named is not None and asked != named:
        raise EvaluateError("--variant %s, but %s is the %s net" % (asked, nets["deploy_features"],
                                                                     named))
    variant = VARIANTS[asked or named]
    if variant.metric and "deploy_metric" not in nets:
        raise EvaluateError("variant %s needs %s/deploy_metric.prototxt, which is missing"
                            % (variant.name, Path(nets["deploy_features"]).parent))
    return variant


def prepare(args):
    """Every check that needs no feature extraction; returns what main runs."""
    nets, named = runs.run_nets(args.run)
    variant = resolve_variant(named, args.variant, nets)
    if args.top < 1 or args.show < 0:
        raise EvaluateError("--top must be >= 1 and --show >= 0")
    if not args.dataset.is_dir():
        raise EvaluateError("%s: dataset folder not found" % args.dataset)
    dataset = open_dataset(args.dataset)
    try:
        return _prepare_with(args, nets, variant, dataset)
    except BaseException:
        dataset.close()
        raise


def _prepare_with(args, nets, variant, dataset):
    two_camera = dataset.name in score.TWO_CAMERA
    splits = None
    if args.splits is not None:
        if not two_camera:
            raise EvaluateError("--splits: %s has one official split" % dataset.name)
        splits = _int_list(args.splits, "--splits")
    lists = score.two_camera_lists(dataset, splits) if two_camera else None
    if lists:
        splits = [s for s, _, _ in lists]
    weights = args.weights or runs.newest_caffemodel(str(args.run))
    paths = score.resolve_weights(weights, splits or [])
    score.check_weights(nets, paths.values(), bool(variant.metric))
    queries = lists[0][1] if lists else dataset.query_idx
    show = None
    if args.show_tids:
        show = _int_list(args.show_tids, "--show-tids")
        bad = sorted(set(show) - set(int(t) for t in queries))
        if bad:
            where = "split %d" % lists[0][0] if lists else dataset.name
            raise EvaluateError("--show-tids %s are not queries of %s" % (bad, where))
    out = args.out or default_out(str(weights), dataset.name)
    features = check_features(args, nets, dataset, weights, paths)
    out.mkdir(parents=True, exist_ok=True)
    return dict(nets=nets, variant=variant, dataset=dataset, weights=str(weights),
                paths=paths, splits=splits, show=show, out=out, features=features)


def default_features(weights, dataset, first_t, per_split):
    """WEIGHTS_DIR/features/<weights stem>.<dataset>[.first-t][.split{split}].h5: beside
    the caffemodel, so that any --out, -k, --lam or protocol reuses it."""
    w = Path(str(weights))
    name = ".".join([w.stem, dataset] + (["first-t"] if first_t else [])
                    + (["split" + score.SPLIT_FIELD] if per_split else []))
    return str(w.parent / "features" / (name + ".h5"))


def check_features(args, nets, dataset, weights, paths):
    """The feature file (template), each file checked: one of other weights, nets, data or
    chunk mode is refused now, and the folder a new one goes to is created now."""
    from reid.evaluation.feature_store import FeatureStoreError, Identity, check_reusable
    per_split = None not in paths
    features = args.features or default_features(weights, dataset.name, args.first_t,
                                                 per_split)
    if per_split and score.SPLIT_FIELD not in features:
        raise EvaluateError("--features %s: one caffemodel per split, so the path needs %s"
                            % (features, score.SPLIT_FIELD))
    chunks = "first" if args.first_t else "all"
    for s, w in paths.items():
        path = score.split_path(features, s) if per_split else features
        ident = Identity.of(w, {"deploy_features": nets["deploy_features"]}, dataset, chunks,
                            -1 if s is None else s)
        try:
            check_reusable(path, ident, args.re_extract)
        except FeatureStoreError as e:
            raise EvaluateError("%s (--re-extract overwrites it, --features PATH names "
                                "another file)" % e) from None
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return features


def default_out(weights, dataset):
    """Beside the weights (never in the committed prototxt/ folder): eval_<dataset>_<weights
    stem> next to the caffemodel, or next to its snapshots/ folder."""
    folder, name = os.path.split(weights)
    if os.path.basename(folder) == "snapshots":
        folder = os.path.dirname(folder)
    if score.SPLIT_FIELD in folder:          # one model per split: beside the split folders
        folder = os.path.dirname(folder.split(score.SPLIT_FIELD)[0] + "x")
    stem = os.path.splitext(name.replace(score.SPLIT_FIELD, "split"))[0]
    return Path(folder or ".") / ("eval_%s_%s" % (dataset, stem))


def weights_title(weights):
    """The weights as a title shows them: the file name, or for one model per split the
    template from its "{split}" folder on (split{split}/snap_iter_N.caffemodel)."""
    parts = Path(weights).parts
    i = next((i for i, p in enumerate(parts) if score.SPLIT_FIELD in p), len(parts) - 1)
    return os.path.join(*parts[i:])


def score_job(job, args):
    if job["splits"] is not None and None in job["paths"]:
        print("evaluate: one caffemodel for every split; unless it was trained on another "
              "dataset, some splits' test persons were in its training data", file=sys.stderr)
    return score.score_run(job["dataset"], job["variant"], job["nets"], job["weights"], args.k,
                           args.lam, job["splits"], "first" if args.first_t else "all",
                           not args.quiet, job["features"], args.re_extract)


def write_outputs(job, args, scored):
    variant, dataset, out = job["variant"], job["dataset"], job["out"]
    name = args.name or variant.label
    meta = dict(scored.meta, weights=job["weights"], run=str(args.run),
                dataset_folder=str(args.dataset), deploy=job["nets"], features=job["features"])
    run = report.make_run(name, scored.results, **meta)
    title = "%s on %s (%s), k=%d, lambda=%g" % (name, report.DATASET_NAMES.get(
        dataset.name, dataset.name), weights_title(job["weights"]), scored.meta["k"],
        scored.meta["lambda"])
    paths = report.write_reports([run], out, "results", title=title)
    paths["features"] = job["features"]
    curves = [("%s, %s" % (name, report.group_title(res)), res["cmc"], res.get("cmc_std"))
              for res in scored.results]
    paths["cmc"] = plots.plot_cmc(curves, out / "cmc.png", title=title)
    show = job["show"] if job["show"] is not None else plots.default_show(scored, args.show)
    if show:
        paths["ranked_lists"] = plots.scored_ranked_lists(
            dataset, scored, show, out / "ranked_lists.png", args.top)
        if "attention" in scored.features:
            T = scored.features["attention"].shape[-1]
            paths["attention"] = plots.scored_attention(
                dataset, scored, show[0], out / ("attention_%d.png" % show[0]), T,
                title="%s: TAM weights w_{t,i} of query tracklet %d (%s)"
                % (name, show[0], dataset.tracklets[show[0]].source))
    return paths


def main(argv=None):
    args = parse_args(argv)
    try:
        job = prepare(args)
        try:
            scored = score_job(job, args)
            paths = write_outputs(job, args, scored)
        finally:
            job["dataset"].close()
    except (ValueError, OSError) as e:     # EvaluateError, RunError, LayoutError, ...
        raise SystemExit("evaluate: %s" % e)
    print(paths["table"].read_text(), end="")
    for kind, path in paths.items():
        print("%s: %s" % (kind, path))
    return paths


if __name__ == "__main__":
    main()
