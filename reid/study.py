"""The Table 2 study as a controlled experiment (paper 4.3, Table 2; docs/TABLE2.md).

Six variants x several seeds (each seed draws its own synthetic dataset, pretraining pool,
initialisation and batches), every variant trained the same way from the same pretrained
trunk (reid.pretrain, standing in for ImageNet) and scored through the one scoring path
(reid.evaluation.score). Per variant: mean and standard deviation over seeds of rank-1/5/20
and mAP under the MARS official kit and the common variant, the mean CMC with its band, and
the diagnostics of every run (reid.evaluation.learning, reid.evaluation.diagnostics).

The phenomena comparisons (phenomena()) run the variants each phenomenon is for on data
with it switched off and on (reid.datasets.synthetic): the frame corruptions for CNN vs
CNN+TAM, camera misalignment and pose change for CNN+DIFF vs CNN+SRM, local identity cues
for CNN vs CNN+SRM.

Everything is resumable: a finished run (its results.json, for the same settings) is
reused, so an interrupted study continues where it stopped.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from reid import pipeline, pretrain
from reid.datasets.synthetic import CORRUPTIONS
from reid.nets.config import SMALL_SCHEDULE, VARIANTS

ORDER = tuple(VARIANTS)                      # the rows of Table 2
# The study's data: every phenomenon on (docs/TABLE2.md says what each is for).
PHENOMENA_ON = dict(corruptions=",".join(CORRUPTIONS), camera_misalignment=0.15,
                    pose_change=1, local_cues=1)
# The paper's conclusions (section 4.3) as paired comparisons: (label, better, worse).
CLAIMS = (
    ("RNN over mean pooling", "cnn_rnn", "cnn"),
    ("TAM over RNN", "cnn_tam", "cnn_rnn"),
    ("TAM over mean pooling", "cnn_tam", "cnn"),
    ("SRM over DIFF", "cnn_srm", "cnn_diff"),
    ("ALL over CNN+TAM", "all", "cnn_tam"),
    ("ALL over CNN+SRM", "all", "cnn_srm"),
    ("ALL over CNN", "all", "cnn"),
)
COMPARISON_HEADER = "%-34s %-20s %-24s %-4s %s"     # seeds.paired_line's columns
METRICS = (("1", "rank-1"), ("mAP", "mAP"))          # what the comparisons compare
PHENOMENA = {   # name: (the data settings that switch it off, the variants it is for)
    "tam": (dict(corruptions=""), ("cnn", "cnn_tam")),
    "srm": (dict(camera_misalignment=0.0, pose_change=0), ("cnn_diff", "cnn_srm")),
    "local_cues": (dict(local_cues=0), ("cnn", "cnn_srm")),
}


@dataclass(frozen=True)
class Study:
    """What one study runs. Defaults: 62 minutes on 2 otherwise idle cores (measured)."""
    seeds: tuple = (1, 2, 3)
    variants: tuple = ORDER
    identities: int = 200                   # half test: >= 100 test identities
    iters: int = SMALL_SCHEDULE.max_iter
    batch_triplets: int = SMALL_SCHEDULE.batch_triplets
    lr: float = SMALL_SCHEDULE.base_lr
    difficulty: float = 0.5
    data: dict = field(default_factory=lambda: dict(PHENOMENA_ON))
    pretrain_identities: int = pretrain.DEFAULTS["identities"]
    pretrain_iters: int = pretrain.DEFAULTS["iters"]
    k: int = 100
    max_len: int | None = None              # shorter tracklets (the small setting)

    def data_settings(self, seed):
        return dict(self.data, **pipeline.data_settings(self.identities, seed,
                                                        self.difficulty, self.max_len))


# The setting the tests use: two seeds, a few iterations on a handful of identities.
SMALL_STUDY = Study(seeds=(1, 2), identities=10, iters=6, batch_triplets=2,
                    pretrain_identities=8, pretrain_iters=4, max_len=12)


# ---- one seed -------------------------------------------------------------------------------
def prepare(out, study, seed, tag="main", overrides=None):
    """The seed's synthetic MARS (prepared) and its pretrained trunk; returns (prepared
    folder, source folder, pretrained caffemodel)."""
    settings = dict(study.data_settings(seed), **(overrides or {}))
    data_dir = Path(out) / "data" / ("%s_seed%d" % (tag, seed))
    prepared = pipeline.prepare_data(data_dir, settings, pipeline.Steps(("generate", "prep")),
                                     progress=False)
    weights = pretrain_seed(out, study, seed)
    return prepared, str(data_dir / "source"), weights


def pretrain_seed(out, study, seed):
    """The trunk pretrained on the seed's disjoint identity pool (reid.pretrain)."""
    cfg = pipeline.net_config("", "cnn", seed, study.batch_triplets)
    synthetic = dict(study.data, difficulty=study.difficulty)
    if study.max_len:
        synthetic["max_len"] = study.max_len
    return pretrain.pretrain(Path(out) / "pretrain" / ("seed%d" % seed), cfg,
                             identities=study.pretrain_identities, iters=study.pretrain_iters,
                             progress=False, **synthetic)


def run_settings(study, variant, seed, data):
    return dict(variant=variant, seed=seed, iterations=study.iters, base_lr=study.lr,
                batch_triplets=study.batch_triplets, data=data, k=study.k,
                pretrain=[study.pretrain_identities, study.pretrain_iters])


def run_one(out_dir, study, variant, seed, prepared, source, pretrained, data, progress=False):
    """One variant on one seed: nets, start weights, `bin/caffe train -weights pretrained`,
    scoring, diagnostics, outputs in out_dir; reused when out_dir/results.json holds a run of
    the same settings. Returns the run dict."""
    from reid.evaluation import report
    out_dir = Path(out_dir)
    want = run_settings(study, variant, seed, data)
    done = out_dir / "results.json"
    if done.is_file():
        run = report.load_json(done)[0]
        if run["meta"].get("settings") == json.loads(json.dumps(want)):
            print("== %s, seed %d: reusing %s" % (VARIANTS[variant].label, seed,
                                                   pipeline.rel(done)), flush=True)
            return run
    steps = pipeline.Steps(("nets", "train", "evaluate"))
    cfg = pipeline.net_config(prepared, variant, seed, study.batch_triplets)
    run_dir = out_dir / "run"
    nets = pipeline.write_run_nets(cfg, run_dir, study.iters, study.lr, steps)
    start = pretrain.start_weights(nets["train_val"], seed, str(run_dir / "start.caffemodel"),
                                   pretrained)
    t0 = time.time()
    weights, log, _ = pipeline.train_run(nets, run_dir, study.iters, steps, True, progress,
                                         weights=pretrained)
    train_s = time.time() - t0
    steps.start("evaluate", "official kit + common variant, diagnostics")
    dataset, scored = pipeline.score(prepared, cfg, nets, weights, study.k, progress=progress)
    from reid.datasets.synthetic import degraded_frames
    degraded = degraded_frames(source)
    meta = pipeline.study_meta(dataset, scored, degraded, cfg, settings=want,
                               train_seconds=round(train_s, 1),
                               last_losses={k: v[-3:] for k, v in log.outputs.items()},
                               **learning_diagnostics(dataset, scored, cfg, nets, start,
                                                      weights, log))
    title = "%s (small net), seed %d" % (cfg.variant.label, seed)
    run, _ = pipeline.write_outputs(out_dir, scored, dataset, log, cfg, meta, degraded, title)
    dataset.close()
    steps.done()
    return run


def learning_diagnostics(dataset, scored, cfg, nets, start, weights, log):
    """Saturated gates at the start and the end (feature models with an LSTM), the metric
    branch's final loss against ln 2 and its AUC over all test pairs (metric variants)."""
    from reid.evaluation import learning
    from reid.evaluation.features import FeatureExtractor, MetricScorer
    out = {}
    if cfg.variant.temporal in ("rnn", "tam"):
        out["saturation"] = {tag: learning.saturation_on_test(
            FeatureExtractor(nets["deploy_features"], w), dataset, scored.tids)
            for tag, w in (("start", start), ("end", weights))}
    if cfg.variant.metric:
        entry = scored.lists[0]
        pos = {int(t): i for i, t in enumerate(scored.tids)}
        q_rows = np.array([pos[int(t)] for t in entry["query"]])
        g_rows = np.array([pos[int(t)] for t in entry["gallery"]])
        m = metric_matrix(entry["ranking"], MetricScorer(nets["deploy_metric"], weights),
                          scored.features, q_rows, g_rows)
        same, valid = learning.pair_labels(dataset.pids[scored.tids], q_rows, g_rows)
        loss = float(np.mean(log.outputs.get("metric_loss", [float("nan")])[-3:]))
        share = 1 / 3 if cfg.metric_negatives == "mixed" else 1 / 2
        out["metric"] = {"auc_all_test_pairs": learning.pair_auc(m, same, valid),
                         "final_loss": loss, "ln2": learning.CHANCE_PAIR_LOSS,
                         "constant_answer_loss": learning.constant_answer_loss(share),
                         "learned": learning.metric_loss_learned(loss, share)}
    return out


def metric_matrix(ranking, scorer, feats, q_rows, g_rows):
    """M (n_q, n_g) over every query-gallery pair: from a metric-only ranking, which scored
    them all, or else computed (M averaged over aligned chunk pairs)."""
    from reid.evaluation import rerank
    n_q, n_g = q_rows.size, g_rows.size
    if ranking.mode == "metric" and ranking.k == n_g:
        m = np.empty((n_q, n_g))
        np.put_along_axis(m, ranking.order, ranking.scores, axis=1)
        return m
    full = rerank.metric_ranking(scorer.chunk_metric_fn(feats, q_rows, g_rows), n_q, n_g,
                                 progress=False)
    return metric_matrix(full, scorer, feats, q_rows, g_rows)


# ---- the study --------------------------------------------------------------------------------
def run_study(out, study, tag="main", overrides=None, variants=None, progress=False):
    """Every variant on every seed (runs in out/<tag>/seed<s>/<variant>); returns
    {variant: [run per seed]}. Prints one line per finished run."""
    out = Path(out)
    runs = {}
    for seed in study.seeds:
        prepared, source, weights = prepare(out, study, seed, tag, overrides)
        data = dict(study.data_settings(seed), **(overrides or {}))
        for v in variants or study.variants:
            t0 = time.time()
            run = run_one(out / tag / ("seed%d" % seed) / v, study, v, seed, prepared, source,
                          weights, data, progress)
            runs.setdefault(v, []).append(run)
            print("%-10s seed %d  rank-1 %5.1f  mAP %5.1f  (%.0f s)" % (
                VARIANTS[v].label, seed, 100 * run["results"][0]["ranks"]["1"],
                100 * run["results"][0]["mAP"], time.time() - t0), flush=True)
    return runs


def summarise(out, runs, stem, title):
    """The table (mean +- std over seeds), the CMC figures with their bands and the
    diagnostics of every run; runs: {row label: [run per seed]}. Returns the aggregated runs
    and the written paths."""
    from reid.evaluation import plots, protocols, report
    from reid.evaluation.seeds import aggregate, run_seed
    out = Path(out)
    agg = [aggregate(label, rs, seeds=[run_seed(r) for r in rs])
           for label, rs in runs.items()]
    paths = report.write_reports(agg, out, stem, title=title)
    for protocol, suffix in ((protocols.MARS_OFFICIAL, ""), (protocols.MARS_COMMON, "_common")):
        paths["cmc" + suffix] = plots.plot_cmc(
            plots.cmc_curves(agg, protocol), out / ("%s_cmc%s.png" % (stem, suffix)),
            max_rank=30, title="%s, %s (mean and std over seeds)" % (
                title.split(" (")[0], protocols.PROTOCOL_LABELS[protocol].split(" (")[0]))
    paths["diagnostics"] = out / ("%s_diagnostics.txt" % stem)
    paths["diagnostics"].write_text(diagnostics_text(runs))
    return agg, paths


def diagnostics_text(runs):
    """One line per run: F spread, saturated gates start -> end, TAM weight on corrupted vs
    clean frames, metric branch final loss (ln 2 = 0.693) and AUC over all test pairs."""
    w = max([9] + [len(label) for label in runs])
    lines = ["%-*s %4s %7s %8s  %-21s %-17s %s" % (
        w, "variant", "seed", "train s", "F spread", "saturated LSTM/TAM", "TAM w x T bad/ok",
        "metric loss, AUC all test pairs"),
        "%-*s %4s %7s %8s  %-21s" % (w, "", "", "", "", "start -> end")]
    for label, rs in runs.items():
        for r in rs:
            m = r["meta"]
            sat = m.get("saturation")
            sat_s = "-" if not sat else "%s -> %s" % tuple(
                "/".join("%.2f" % sat[t][k] for k in ("lstm", "tam") if k in sat[t])
                for t in ("start", "end"))
            att = m.get("attention_on_degraded") or {}
            att_s = ("%.2f / %.2f" % (att["degraded_x_T"], att["clean_x_T"])
                     if att.get("tracklets") else "-")
            met = m.get("metric")
            met_s = "-" if not met else "%.3f%s, %.3f" % (
                met["final_loss"], "" if met["learned"] else " (chance)",
                met["auc_all_test_pairs"])
            lines.append("%-*s %4d %7.0f %8.3f  %-21s %-17s %s" % (
                w, label, m["settings"]["seed"], m.get("train_seconds") or 0,
                m.get("feature_spread", float("nan")), sat_s, att_s, met_s))
    lines.append("F spread: mean distance of L2-normalised test features (0: collapsed). "
                 "Saturated: share of gate pre-activations beyond +-3. Metric loss: mean of "
                 "the last readings, '(chance)' unless 0.05 below the best constant answer "
                 "for the pair mix (0.637 for 1 : 2, ln 2 = 0.693 for 1 : 1).")
    return "\n".join(lines) + "\n"


def comparisons_text(runs, protocol=None):
    """The CLAIMS as paired differences over seeds (reid.evaluation.seeds.paired), rank-1
    and mAP in percentage points under `protocol` (default the MARS official kit); runs:
    {variant: [run per seed]}."""
    from reid.evaluation import protocols, seeds
    protocol = protocol or protocols.MARS_OFFICIAL
    lines = ["Paired differences over seeds (%s, percentage points; a seed's data, "
             "pretraining and test set are shared by its variants)"
             % protocols.PROTOCOL_LABELS[protocol].split(" (")[0]]
    for metric, name in METRICS:
        lines.append(_header(name))
        lines += [seeds.paired_line(label, seeds.paired(runs[a], runs[b], protocol, metric))
                  for label, a, b in CLAIMS if a in runs and b in runs]
    lines.append("Verdict: 'holds' when the 95 % interval of the mean difference lies above "
                 "0, 'reversed' below 0, else 'not separated'.")
    return "\n".join(lines) + "\n"


def _header(metric):
    return COMPARISON_HEADER % (metric, "per seed", "   mean [95 % t-interval]", "wins",
                                "verdict")


def phenomenon_text(name, variants, by_state, protocol=None):
    """What a phenomenon does, paired by seed: each variant on - off, and the component's
    gain (variants[1] - variants[0]) off, on, and its change on - off."""
    from reid.evaluation import protocols, seeds
    protocol = protocol or protocols.MARS_OFFICIAL
    base, comp = variants
    label = "%s - %s" % (VARIANTS[comp].label, VARIANTS[base].label)
    lines = ["Phenomenon %s, paired over seeds (%s, percentage points)"
             % (name, protocols.PROTOCOL_LABELS[protocol].split(" (")[0])]
    for metric, mname in METRICS:
        lines.append(_header(mname))
        for v in variants:
            lines.append(seeds.paired_line("%s, on - off" % VARIANTS[v].label, seeds.paired(
                by_state["on"][v], by_state["off"][v], protocol, metric, seeds.SIGN_WORDS)))
        gain = {}
        for state in ("off", "on"):
            p = seeds.paired(by_state[state][comp], by_state[state][base], protocol, metric,
                             seeds.SIGN_WORDS)
            lines.append(seeds.paired_line("%s, %s %s" % (label, name, state), p))
            gain[state] = dict(zip(p["seeds"], p["diffs"]))
        change = {s: gain["on"][s] - gain["off"][s] for s in set(gain["on"]) & set(gain["off"])}
        lines.append(seeds.paired_line("gain on - gain off",
                                       seeds.differences(change, seeds.SIGN_WORDS)))
    lines.append("Verdict: 'above 0' or 'below 0' when the 95 % interval of the mean lies "
                 "there, else 'not separated'.")
    return "\n".join(lines) + "\n"


def main_study(out, study, progress=False):
    """The six variants over the seeds: table2.*, table2_cmc*.png, table2_diagnostics.txt."""
    t0 = time.time()
    runs = run_study(out, study, progress=progress)
    title = ("Table 2 (small nets, synthetic MARS: %d identities, %d iterations, seeds %s; "
             "mean±std)" % (study.identities, study.iters, ",".join(map(str, study.seeds))))
    agg, paths = summarise(out, {VARIANTS[v].label: rs for v, rs in runs.items()}, "table2",
                           title)
    if len(study.seeds) > 1:
        paths["comparisons"] = Path(out) / "table2_comparisons.txt"
        paths["comparisons"].write_text(comparisons_text(runs))
    chance = chance_levels(out, study)
    with open(paths["diagnostics"], "a") as f:
        f.write("Chance (official kit, rank-1 of random rankings / 1 over test identities): "
                + "; ".join("seed %d %.1f %% / %.1f %% (%d queries, gallery %d)" % (
                    s, 100 * c["random_rankings"], 100 * c["one_over_test_ids"], c["queries"],
                    c["gallery"]) for s, c in chance.items()) + "\n")
    (Path(out) / "table2_settings.json").write_text(json.dumps(dict(
        asdict(study), chance=chance, seconds=round(time.time() - t0, 1)), indent=1))
    return agg, paths


def chance_levels(out, study, tag="main"):
    """{seed: reid.evaluation.diagnostics.chance_rank1 of the seed's test set}."""
    from reid.datasets import open_dataset
    from reid.evaluation.diagnostics import chance_rank1
    levels = {}
    for seed in study.seeds:
        with open_dataset(Path(out) / "data" / ("%s_seed%d" % (tag, seed)) / "mars") as ds:
            levels[seed] = chance_rank1(ds)
    return levels


def phenomena(out, study, names=tuple(PHENOMENA), progress=False):
    """For each phenomenon, its variants on data with it off and on (on: the main study's
    data, so those runs are shared): phenomena_<name>.txt / .csv / .json / _cmc.png, one row
    per (variant, off / on)."""
    paths = {}
    for name in names:
        off, variants = PHENOMENA[name]
        rows, by_state = {}, {}
        for state, tag, overrides in (("off", name + "_off", off), ("on", "main", None)):
            runs = run_study(out, study, tag=tag, overrides=overrides, variants=variants,
                             progress=progress)
            by_state[state] = runs
            rows.update({"%s, %s %s" % (VARIANTS[v].label, name, state): rs
                         for v, rs in runs.items()})
        paths[name] = summarise(out, rows, "phenomena_" + name,
                                "Phenomenon %s off / on (mean±std over seeds %s)" % (
                                    name, ",".join(map(str, study.seeds))))[1]
        if len(study.seeds) > 1:
            paths[name]["comparisons"] = Path(out) / ("phenomena_%s_comparisons.txt" % name)
            paths[name]["comparisons"].write_text(phenomenon_text(name, variants, by_state))
    return paths


def metric_summary(meta):
    """What the demo prints about its metric branch and its gates (run meta of
    learning_diagnostics)."""
    lines = []
    met = meta.get("metric")
    if met:
        lines.append("Metric branch: final metric loss %.3f against ln 2 = %.3f (a head that "
                     "always answers 1/2) and %.3f (the best constant answer for its pair "
                     "mix): %s; M's AUC over all query-gallery test pairs %.3f (0.5 = chance)."
                     % (met["final_loss"], met["ln2"], met["constant_answer_loss"],
                        "learned" if met["learned"] else "NOT learned (not below it by 0.05)",
                        met["auc_all_test_pairs"]))
    sat = meta.get("saturation")
    if sat:
        start, end = (" / ".join("%.3f" % sat[t][k] for k in ("lstm", "tam") if k in sat[t])
                      for t in ("start", "end"))
        lines.append("Saturated gate pre-activations (|x| > 3), LSTM / TAM: %s at the start, "
                     "%s at the end; F spread %.3f (0 = collapsed)."
                     % (start, end, meta.get("feature_spread", 0)))
    return "\n".join(lines)
