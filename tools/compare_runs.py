#!/usr/bin/env python3
"""Compare evaluation runs (the six ablations of paper Table 2, or one method on the three
datasets of Table 3) in one table and one CMC figure (like paper Fig. 9).

Reads result JSONs written by reid.evaluation.report.save_json / write_reports, writes
<out>/<stem>.txt (Table-shaped text), .csv, .json (all runs merged) and <out>/<stem>_cmc.png
(one panel per dataset; with --protocol / --dataset, one panel:
<stem>_cmc_<dataset>_<protocol>.png).

    python tools/compare_runs.py runs/CNN.json runs/ALL.json ... --out out/compare \
        [--protocol mars_official] [--dataset mars] [--max-rank 50] [--title "Table 2"]
    python tools/compare_runs.py out/ilidsvid/results.json out/prid2011/results.json \
        out/mars/results.json --out out/table3
    python tools/compare_runs.py out/demo_s{1,2,3}/results.json --over-seeds --out out/demo3

Runs of the same name on different datasets (or protocols) become one row, so the three
results.json of ALL give one Table-3 row; a run that repeats a dataset of its row is tagged
with its file (the file name, or its folders where every file is results.json).
With --over-seeds the files are seeds of the same runs instead: one row per run name, mean
± standard deviation over the files, the CMC figure with its band.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import reid  # noqa: F401
except ImportError:   # run as a script from a checkout without PYTHONPATH
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.evaluation import plots, report, seeds  # noqa: E402
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
    p.add_argument("--over-seeds", action="store_true",
                   help="the files are seeds of the same runs: one row per run name with "
                        "the mean ± std over the files (reid.evaluation.seeds)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        ranks = tuple(int(k) for k in args.ranks.split(","))
    except ValueError:
        raise SystemExit(f"--ranks: expected comma-separated integers, got {args.ranks!r}")
    try:
        loaded = [report.load_json(p) for p in args.results]
        if args.over_seeds:
            runs = seeds.over_seeds(loaded, args.results)
        else:
            runs = report.merge_runs(loaded, [str(p) for p in args.results])
        paths = report.write_reports(runs, args.out, args.stem, ranks, args.title)
        panels = plots.cmc_panels(runs, args.protocol, args.dataset)
        first = panels[0][0]
        png = args.out / (f"{args.stem}_cmc_{first.get('dataset')}_{first['protocol']}.png"
                          if args.protocol or args.dataset else f"{args.stem}_cmc.png")
        paths["cmc"] = plots.plot_cmc_panels(
            [(report.group_title(res), curves) for res, curves in panels], png,
            max_rank=args.max_rank, title=args.title)
    except EvaluationInputError as e:
        raise SystemExit(f"compare_runs: {e}")
    print(paths["table"].read_text(), end="")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return paths


if __name__ == "__main__":
    main()
