#!/usr/bin/env python3
"""Compare evaluation runs (e.g. the six ablations of paper Table 2) in one table and one
CMC figure (like paper Fig. 9).

Reads result JSONs written by reid.evaluation.report.save_json / write_reports, writes
<out>/<stem>.txt (Table-shaped text), .csv, .json (all runs merged) and
<out>/<stem>_cmc_<dataset>_<protocol>.png.

    python tools/compare_runs.py runs/CNN.json runs/ALL.json ... --out out/compare \
        [--protocol mars_official] [--dataset mars] [--max-rank 50] [--title "Table 2"]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import reid  # noqa: F401
except ImportError:   # run as a script from a checkout without PYTHONPATH
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.evaluation import plots, report  # noqa: E402
from reid.evaluation.protocols import EvaluationInputError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="result JSON files")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--stem", default="comparison", help="output file name stem")
    p.add_argument("--protocol", default=None,
                   help="protocol of the CMC figure (default: the first one found)")
    p.add_argument("--dataset", default=None, help="dataset of the CMC figure")
    p.add_argument("--max-rank", type=int, default=None, help="last rank on the CMC figure")
    p.add_argument("--ranks", default="1,5,10,20", help="table ranks, comma separated")
    p.add_argument("--title", default=None)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        ranks = tuple(int(k) for k in args.ranks.split(","))
    except ValueError:
        raise SystemExit(f"--ranks: expected comma-separated integers, got {args.ranks!r}")
    try:
        runs = report.merge_runs([report.load_json(p) for p in args.results],
                                 [str(p) for p in args.results])
        paths = report.write_reports(runs, args.out, args.stem, ranks, args.title)
        first = next((res for r in runs for res in r["results"]
                      if (args.protocol is None or res["protocol"] == args.protocol)
                      and (args.dataset is None or res.get("dataset") == args.dataset)), None)
        if first is None:
            raise EvaluationInputError(f"no run has protocol {args.protocol!r} / dataset "
                                       f"{args.dataset!r} for the CMC figure")
        protocol, dataset = first["protocol"], first.get("dataset")
        curves = plots.cmc_curves(runs, protocol, dataset)
        png = args.out / f"{args.stem}_cmc_{dataset}_{protocol}.png"
        paths["cmc"] = plots.plot_cmc(curves, png, max_rank=args.max_rank,
                                      title=args.title or report.group_title(first))
    except EvaluationInputError as e:
        raise SystemExit(f"compare_runs: {e}")
    print(paths["table"].read_text(), end="")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return paths


if __name__ == "__main__":
    main()
