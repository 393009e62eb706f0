#!/usr/bin/env python
"""The paper's Table 2 study on a synthetic MARS: the six ablations (CNN, CNN+RNN, CNN+TAM,
CNN+DIFF, CNN+SRM, ALL; docs/DESIGN.md §1.4), trained with the same data, iterations and seed and
scored the same way (MARS official kit and common variant, eq. 2 for ALL).

    bin/python tools/table2.py [--out out/table2] [--identities 40] [--iters 300] [--seed 1]
                               [--variants cnn,cnn_rnn,...] [--resume] [--tiny]

Writes --out/table2.txt/.csv/.json (one table, Table-2 shaped), table2_cmc.png (official
protocol, like Fig. 9), table2_cmc_common.png, table2_diagnostics.txt (per variant: training
time, last losses, spread of the test features F, TAM weight on degraded frames) and per
variant <variant>/ (nets, snapshots, train.log, results.*, cmc, ranked list, attention).
A variant whose <variant>/results.json exists for the same settings is not run again, so an
interrupted study continues where it stopped (--resume also continues an interrupted
training from its last snapshot). Steps and helpers are those of tools/demo.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo  # noqa: E402  (tools/demo.py: the shared steps)

from reid.evaluation import plots, protocols, report  # noqa: E402
from reid.nets.config import TABLE2_LABELS, VARIANTS  # noqa: E402

ORDER = ("cnn", "cnn_rnn", "cnn_tam", "cnn_diff", "cnn_srm", "all")   # paper Table 2 rows
DEFAULTS = dict(identities=40, iters=600, seed=1, batch_triplets=4)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--out", type=Path, default=Path("out/table2"), help="output folder")
    p.add_argument("--identities", type=int, default=None,
                   help="synthetic identities (default %d)" % DEFAULTS["identities"])
    p.add_argument("--iters", type=int, default=None,
                   help="training iterations of every variant (default %d)" % DEFAULTS["iters"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help="seed of the dataset and of every training (default 1)")
    p.add_argument("--batch-triplets", type=int, default=None, help="B (default 4)")
    p.add_argument("--lr", type=float, default=demo.DEFAULTS["lr"], help="base learning rate")
    p.add_argument("--difficulty", type=float, default=demo.DEFAULTS["difficulty"],
                   help="synthetic data difficulty (default 0.5)")
    p.add_argument("--degrade-prob", type=float, default=None,
                   help="share of degraded frames (default from difficulty)")
    p.add_argument("--variants", default=",".join(ORDER),
                   help="comma-separated subset of %s" % ",".join(ORDER))
    p.add_argument("--tiny", action="store_true", help="CI size (plumbing only)")
    p.add_argument("--resume", action="store_true",
                   help="continue interrupted trainings from their last snapshot")
    p.add_argument("--fresh", action="store_true", help="redo everything")
    p.add_argument("-k", type=int, default=100, help="eq. 2 re-scored list length")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown or not a.variants:
        p.error("--variants: unknown %s; choose from %s" % (unknown, ",".join(ORDER)))
    return a


def sizes(a):
    base = dict(demo.TINY) if a.tiny else dict(DEFAULTS)
    return dict(identities=a.identities or base["identities"], iters=a.iters or base["iters"],
                batch_triplets=a.batch_triplets or base["batch_triplets"])


def run_variant(variant, prepared, source, out, s, a, progress):
    """Nets, training and scoring of one variant into out/<variant>/; returns its run dict
    (reused from results.json when that exists for the same settings)."""
    vdir = out / variant
    meta_want = {"identities": s["identities"], "seed": a.seed, "iterations": s["iters"],
                 "batch_triplets": s["batch_triplets"], "base_lr": a.lr,
                 "difficulty": a.difficulty, "degrade_prob": a.degrade_prob}
    done = vdir / "results.json"
    if done.is_file():
        run = report.load_json(done)[0]
        if {k: run["meta"].get(k) for k in meta_want} == meta_want:
            print("\n== %s: reusing %s" % (TABLE2_LABELS[variant], demo.rel(done)), flush=True)
            return run
    print("\n== %s" % TABLE2_LABELS[variant], flush=True)
    steps = demo.Steps(("nets", "train", "evaluate"))
    cfg = demo.net_config(prepared, variant, a.seed, s["batch_triplets"])
    run_dir = vdir / "run"
    nets = demo.write_run_nets(cfg, run_dir, s["iters"], a.lr, steps)
    t0 = time.time()
    weights, log, trained = demo.train_run(nets, run_dir, s["iters"], steps, a.resume, progress)
    train_s = time.time() - t0
    steps.start("evaluate", "official kit + common variant")
    dataset, scored = demo.score(prepared, cfg, nets, weights, a.k, progress=progress)
    degraded = demo.degraded_frames(source)
    meta = dict(meta_want, weights=demo.rel(weights),
                train_seconds=round(train_s, 1) if trained else None,
                last_losses={k: v[-3:] for k, v in log.outputs.items()},
                feature_spread=demo.feature_spread(scored),
                attention_on_degraded=demo.attention_on_degraded(dataset, scored, degraded,
                                                                 cfg.seq_len))
    title = "%s (small net), synthetic MARS: %d identities, %d iterations, seed %d" % (
        TABLE2_LABELS[variant], s["identities"], s["iters"], a.seed)
    run, _ = demo.write_outputs(vdir, TABLE2_LABELS[variant], scored, dataset, log, cfg, meta,
                                degraded, title)
    dataset.close()
    steps.done()
    return run


def diagnostics(runs, chance):
    """Per variant: what the table does not show (training time, losses, feature spread,
    TAM weights on degraded frames), as text."""
    lines = ["Diagnostics (chance: rank-1 %.1f %% for random rankings; 1 / %d test "
             "identities = %.1f %%)" % (100 * chance["random_rankings"],
                                        chance["test_identities"],
                                        100 * chance["one_over_test_ids"]),
             "%-9s %8s  %-44s %8s  %s" % ("variant", "train s", "last losses (mean of last 3 "
                                          "readings)", "F spread", "TAM weight x T: degraded / "
                                          "clean frames (tracklets)")]
    for r in runs:
        m = r["meta"]
        losses = ", ".join("%s %.3f" % (k.replace("_loss", ""), sum(v) / len(v))
                           for k, v in sorted(m.get("last_losses", {}).items())
                           if k.endswith("loss") and v)
        att = m.get("attention_on_degraded")
        att_s = ("%.2f / %.2f (%d)" % (att["degraded_x_T"], att["clean_x_T"], att["tracklets"])
                 if att and att.get("tracklets") else "-")
        ts = m.get("train_seconds")
        lines.append("%-9s %8s  %-44s %8.3f  %s" % (r["name"], "-" if ts is None else
                                                   "%.0f" % ts, losses,
                                                   m.get("feature_spread", float("nan")), att_s))
    lines.append("F spread: mean distance between L2-normalised test features (0 = every "
                 "tracklet maps to one point; CNN+DIFF and CNN+SRM do not train F).")
    return "\n".join(lines) + "\n"


def main(argv=None):
    a = parse_args(argv)
    s = sizes(a)
    out = a.out.resolve()
    if a.fresh:
        demo.clear_output(out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not a.quiet
    t0 = time.time()
    print("Table 2 study: %s; %d identities, %d iterations, B = %d, seed %d; output in %s"
          % (", ".join(TABLE2_LABELS[v] for v in a.variants), s["identities"], s["iters"],
             s["batch_triplets"], a.seed, demo.rel(out)), flush=True)
    settings = {"identities": s["identities"], "seed": a.seed, "difficulty": a.difficulty}
    if a.degrade_prob is not None:
        settings["degrade_prob"] = a.degrade_prob
    if a.tiny:
        settings["max_len"] = demo.TINY["max_len"]
    try:
        prepared = demo.prepare_data(out / "data", settings, demo.Steps(("generate", "prep")),
                                     progress=progress)
        runs = [run_variant(v, prepared, out / "data" / "source", out, s, a, progress)
                for v in a.variants]
    except demo.DemoError as e:
        print("\ntable2: %s" % e, file=sys.stderr)
        return 1
    from reid.datasets import open_dataset
    with open_dataset(prepared) as ds:
        chance = demo.chance_rank1(ds)
    title = ("Table 2 (small nets, synthetic MARS: %d identities%s, %d iterations, seed %d)"
             % (s["identities"], "" if a.degrade_prob is None else
                ", %.0f %% degraded frames" % (100 * a.degrade_prob), s["iters"], a.seed))
    paths = report.write_reports(runs, out, "table2", title=title)
    for protocol, suffix in ((protocols.MARS_OFFICIAL, ""), (protocols.MARS_COMMON, "_common")):
        paths["cmc" + suffix] = plots.plot_cmc(
            plots.cmc_curves(runs, protocol), out / ("table2_cmc%s.png" % suffix),
            title="%s, %s" % (title.split(" (")[0], protocols.PROTOCOL_LABELS[protocol]
                              .split(" (")[0]))
    diag = diagnostics(runs, chance)
    paths["diagnostics"] = out / "table2_diagnostics.txt"
    paths["diagnostics"].write_text(diag)
    (out / "table2_settings.json").write_text(json.dumps(dict(
        settings, iterations=s["iters"], batch_triplets=s["batch_triplets"], base_lr=a.lr,
        variants=a.variants, chance=chance, seconds=round(time.time() - t0, 1)), indent=1))
    print("\n" + paths["table"].read_text() + "\n" + diag, end="")
    print("\nFinished in %s. Outputs in %s:" % (demo.duration(time.time() - t0), demo.rel(out)))
    for kind, path in sorted(paths.items()):
        print("  %-12s %s" % (kind, demo.rel(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
