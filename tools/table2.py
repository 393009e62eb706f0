#!/usr/bin/env python
"""The paper's Table 2 as a controlled experiment on synthetic MARS (reid.study): the six
ablations (CNN, CNN+RNN, CNN+TAM, CNN+DIFF, CNN+SRM, ALL; docs/DESIGN.md §1.4) over several
seeds, each seed its own data, pretraining pool, initialisation and batches, every variant
starting from the same pretrained trunk and scored through the one scoring path.

    bin/python tools/table2.py [--out out/table2] [--seeds 1,2,3] [--identities 200]
                               [--iters 600] [--variants cnn,...] [--tiny] [--quiet]
    bin/python tools/table2.py --phenomena [tam,srm,local_cues] [--out out/table2] ...

Main study: table2.txt/.csv/.json (mean±std over seeds of rank-1/5/10/20 and mAP, MARS
official kit and common variant), table2_cmc.png / table2_cmc_common.png (mean CMC with
its band), table2_diagnostics.txt (per run: F spread, saturated gates at start and end, TAM
weight on corrupted vs clean frames, metric loss against ln 2, M's AUC over all test pairs)
and per run main/seed<s>/<variant>/ (nets, train.log, losses.png, results, figures).
--phenomena: for each phenomenon the variants it is for, on data with it off and on
(phenomena_<name>.*; the 'on' runs are the main study's). Finished runs are reused, so an
interrupted study continues where it stopped. Default: 62 minutes on 2 idle cores (measured).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid import pipeline as P  # noqa: E402
from reid import study as S  # noqa: E402
from reid.nets.config import VARIANTS  # noqa: E402



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    d = S.Study()
    p.add_argument("--out", type=Path, default=Path("out/table2"), help="output folder")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default %s)"
                   % ",".join(map(str, d.seeds)))
    p.add_argument("--identities", type=int, default=None,
                   help="synthetic identities, half of them test (default %d)" % d.identities)
    p.add_argument("--iters", type=int, default=None, help="training iterations (default %d)"
                   % d.iters)
    p.add_argument("--lr", type=float, default=None, help="base lr (default %g)" % d.lr)
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset of %s" % ",".join(VARIANTS))
    p.add_argument("--phenomena", nargs="?", const=",".join(S.PHENOMENA), default=None,
                   help="run the phenomenon on/off comparisons (%s) instead of the main "
                        "study" % ",".join(S.PHENOMENA))
    p.add_argument("--tiny", action="store_true",
                   help="the small setting the tests use (plumbing, not learning)")
    p.add_argument("--fresh", action="store_true", help="redo everything")
    p.add_argument("--overwrite", action="store_true",
                   help="with --fresh, also delete an --out this tool did not write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    a.variants = tuple(v.strip() for v in a.variants.split(",") if v.strip())
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown or not a.variants:
        p.error("--variants: unknown %s; choose from %s" % (unknown, ",".join(VARIANTS)))
    if a.phenomena is not None:
        a.phenomena = tuple(n.strip() for n in a.phenomena.split(",") if n.strip())
        bad = [n for n in a.phenomena if n not in S.PHENOMENA]
        if bad or not a.phenomena:
            p.error("--phenomena: unknown %s; choose from %s" % (bad, ",".join(S.PHENOMENA)))
    return a


def study_of(a):
    base = S.SMALL_STUDY if a.tiny else S.Study()
    kw = dict(variants=a.variants)
    if a.seeds:
        kw["seeds"] = tuple(int(s) for s in a.seeds.split(","))
    for key in ("identities", "iters", "lr"):
        if getattr(a, key) is not None:
            kw[key] = getattr(a, key)
    return replace(base, **kw)


def main(argv=None):
    a = parse_args(argv)
    study = study_of(a)
    out = a.out.resolve()
    progress = not a.quiet
    t0 = time.time()
    print("Table 2 study: %s; seeds %s, %d identities, %d iterations, lr %g; output in %s"
          % (", ".join(VARIANTS[v].label for v in study.variants),
             ",".join(map(str, study.seeds)), study.identities, study.iters, study.lr,
             P.rel(out)), flush=True)
    try:
        P.open_output(out, "table2", a.fresh, a.overwrite)
        if a.phenomena:
            paths = S.phenomena(out, study, a.phenomena, progress=progress)
            for name, p in paths.items():
                print("\n" + p["table"].read_text() + p["diagnostics"].read_text()
                      + (p["comparisons"].read_text() if "comparisons" in p else ""), end="")
        else:
            _, p = S.main_study(out, study, progress=progress)
            print("\n" + p["table"].read_text() + "\n" + p["diagnostics"].read_text()
                  + ("\n" + p["comparisons"].read_text() if "comparisons" in p else ""),
                  end="")
    except P.PipelineError as e:
        print("\ntable2: %s" % e, file=sys.stderr)
        return 1
    print("\nFinished in %s. Outputs in %s" % (P.duration(time.time() - t0), P.rel(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
