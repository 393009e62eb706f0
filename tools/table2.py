#!/usr/bin/env python
"""The paper's Table 2 study on a synthetic MARS: the six ablations (CNN, CNN+RNN, CNN+TAM,
CNN+DIFF, CNN+SRM, ALL; DESIGN.md 1.4), trained with the same data, iterations and seed and
scored the same way (MARS official kit and common variant, eq. 2 for ALL).

    bin/python tools/table2.py [--out out/table2] [--identities 40] [--iters 300] [--seed 1]
                               [--variants cnn,cnn_rnn,...] [--resume] [--tiny]

Writes --out/table2.txt/.csv/.json (one table, Table-2 shaped), table2_cmc.png (official
protocol, like Fig. 9), table2_cmc_common.png, table2_diagnostics.txt (per variant: training
time, last losses, spread of the test features F, TAM weight on degraded frames) and per
variant <variant>/ (nets, snapshots, train.log, results.*, cmc, ranked list, attention).
A variant whose <variant>/results.json exists for the same settings is not run again, so an
interrupted study continues where it stopped (--resume also continues an interrupted
training from its last snapshot). The steps are reid.pipeline's, as in tools/demo.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid import pipeline as P  # noqa: E402
from reid.evaluation import diagnostics, plots, protocols, report  # noqa: E402
from reid.nets.config import VARIANTS  # noqa: E402

MARKS = ("data/settings.json", "table2_settings.json")   # what --fresh may delete


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--out", type=Path, default=Path("out/table2"), help="output folder")
    P.add_study_options(p)
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset of %s" % ",".join(VARIANTS))
    a = p.parse_args(argv)
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown or not a.variants:
        p.error("--variants: unknown %s; choose from %s" % (unknown, ",".join(VARIANTS)))
    return a


def main(argv=None):
    a = parse_args(argv)
    s = P.sizes(a.identities, a.iters, a.batch_triplets, a.tiny)
    out = a.out.resolve()
    if a.fresh:
        P.clear_output(out, MARKS)
    out.mkdir(parents=True, exist_ok=True)
    progress = not a.quiet
    t0 = time.time()
    print("Table 2 study: %s; %d identities, %d iterations, B = %d, seed %d; output in %s"
          % (", ".join(VARIANTS[v].label for v in a.variants), s["identities"], s["iters"],
             s["batch_triplets"], a.seed, P.rel(out)), flush=True)
    settings = P.data_settings(s["identities"], a.seed, a.difficulty, a.degrade_prob, a.tiny)
    try:
        prepared = P.prepare_data(out / "data", settings, P.Steps(("generate", "prep")),
                                  progress=progress)
        runs = [P.run_variant(v, prepared, out / "data" / "source", out / v, s, a, progress)
                for v in a.variants]
    except P.PipelineError as e:
        print("\ntable2: %s" % e, file=sys.stderr)
        return 1
    from reid.datasets import open_dataset
    with open_dataset(prepared) as ds:
        chance = diagnostics.chance_rank1(ds)
    title = ("Table 2 (small nets, synthetic MARS: %d identities%s, %d iterations, seed %d)"
             % (s["identities"], "" if a.degrade_prob is None else
                ", %.0f %% degraded frames" % (100 * a.degrade_prob), s["iters"], a.seed))
    paths = report.write_reports(runs, out, "table2", title=title)
    for protocol, suffix in ((protocols.MARS_OFFICIAL, ""), (protocols.MARS_COMMON, "_common")):
        paths["cmc" + suffix] = plots.plot_cmc(
            plots.cmc_curves(runs, protocol), out / ("table2_cmc%s.png" % suffix),
            title="%s, %s" % (title.split(" (")[0], protocols.PROTOCOL_LABELS[protocol]
                              .split(" (")[0]))
    diag = diagnostics.diagnostics_table(runs, chance)
    paths["diagnostics"] = out / "table2_diagnostics.txt"
    paths["diagnostics"].write_text(diag)
    (out / "table2_settings.json").write_text(json.dumps(dict(
        settings, iterations=s["iters"], batch_triplets=s["batch_triplets"], base_lr=a.lr,
        variants=a.variants, chance=chance, seconds=round(time.time() - t0, 1)), indent=1))
    print("\n" + paths["table"].read_text() + "\n" + diag, end="")
    print("\nFinished in %s. Outputs in %s:" % (P.duration(time.time() - t0), P.rel(out)))
    for kind, path in sorted(paths.items()):
        print("  %-12s %s" % (kind, P.rel(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
