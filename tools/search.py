#!/usr/bin/env python
"""Search galleries of any size: a FAISS index of F from feature files, the top K by d,
paper eq. 2 on those K (reid/evaluation/search.py), ranked lists as JSON and a figure.

    bin/python tools/search.py --gallery cam1.h5 cam2.h5 --query queries.h5 --out out/search \\
        [--k 100] [--index ivf --nlist 4096 --nprobe 32] \\
        [--metric-net run/deploy_metric.prototxt --weights run/x.caffemodel --lam 1] \\
        [--dataset data/mars]          # frames for ranked_lists.png
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reid.evaluation import search  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gallery", nargs="+", required=True, help="gallery feature files (.h5)")
    p.add_argument("--query", required=True, help="feature file of the query tracklets")
    p.add_argument("--tids", type=int, nargs="*", help="query tracklet ids (default: role query)")
    p.add_argument("--out", required=True)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--index", choices=search.KINDS, default="flat")
    p.add_argument("--nlist", type=int, help="IVF lists (default ~4 sqrt(gallery size))")
    p.add_argument("--nprobe", type=int, default=16, help="IVF lists visited per query")
    p.add_argument("--metric-net", help="deploy_metric.prototxt: re-score the K with eq. 2")
    p.add_argument("--weights", help="caffemodel for --metric-net")
    p.add_argument("--lam", type=float, default=1.0, help="lambda of eq. 2")
    p.add_argument("--dataset", help="prepared dataset folder: draw ranked_lists.png")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if bool(a.metric_net) != bool(a.weights):
        p.error("--metric-net and --weights go together")
    metric = (a.metric_net, a.weights) if a.metric_net else None
    dataset = None
    if a.dataset:
        from reid.datasets.reader import open_dataset
        dataset = open_dataset(a.dataset)
    try:
        paths = search.run(a.gallery, a.query, a.out, k=a.k, kind=a.index, nlist=a.nlist,
                           nprobe=a.nprobe, query_tids=a.tids, metric=metric, lam=a.lam,
                           dataset=dataset, progress=not a.quiet)
    finally:
        if dataset is not None:
            dataset.close()
    for name, path in paths.items():
        print("%s: %s" % (name, path))
    return paths


if __name__ == "__main__":
    main()
