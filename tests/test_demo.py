"""The demo pipeline end to end at CI size: `tools/demo.py --tiny` generates a
synthetic MARS, prepares it with the real prep tool, trains the small ALL net with
`bin/caffe train` from a pretrained trunk, evaluates it with the official protocol and writes
the reports and plots.

Checks: every output exists and is a readable file; the printed table is results.txt; every
number in the table equals the JSON number (percent, one decimal) and the CSV number; the
folder printed last is the output folder; a second run reuses every step; --resume continues
an interrupted training from its last snapshot. tools/train.py runs on the same tiny data;
tools/table2.py runs its small setting (two seeds, two variants). A few minutes on 2 cores.
"""
import csv
import json
from pathlib import Path

import cv2
import pytest

from reid.evaluation import report
from reid.testing import run_tool

ROOT = Path(__file__).resolve().parents[1]
TINY_ITERS = 6
OUTPUTS = ("results.txt", "results.csv", "results.json", "cmc.png", "ranked_list.png",
           "attention.png", "losses.png", "summary.json", "run/train.log", "run/solver.prototxt",
           "run/snapshots/snap_iter_%d.caffemodel" % TINY_ITERS, "data/mars/index.json",
           "data/source/synthetic_meta.json", "run/start.caffemodel",
           "pretrain/seed1/run/snapshots/snap_iter_4.caffemodel")



@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    stdout = run_tool("tools/demo.py", "--tiny", "--quiet", "--out", out)
    return out, stdout


def test_every_output_exists(demo):
    out, stdout = demo
    for name in OUTPUTS:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert cv2.imread(str(path)) is not None, name
    assert Path(stdout.strip().splitlines()[-1]).resolve() == out.resolve()
    summary = json.loads((out / "summary.json").read_text())
    for kind, path in summary["outputs"].items():
        assert (ROOT / path).is_file(), kind


def test_table_numbers_equal_json(demo):
    out, stdout = demo
    table = (out / "results.txt").read_text()
    assert table in stdout
    runs = report.load_json(out / "results.json")
    assert [r["name"] for r in runs] == ["ALL"]
    assert runs[0]["meta"]["iterations"] == TINY_ITERS
    parsed = report.parse_table(table)
    assert list(parsed) == ["ALL"]
    results = runs[0]["results"]
    assert {r["protocol"] for r in results} == {"mars_official", "mars_common"}
    for res in results:
        cells = parsed["ALL"][report.group_title(res)]
        want = [f"{100 * res['ranks'][k]:.1f}" for k in ("1", "5", "10", "20")]
        want.append(f"{100 * res['mAP']:.1f}")
        assert cells == want, (report.group_title(res), cells, want)
    with open(out / "results.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["metric"] in ("rank", "mAP")]
    by_key = {(r["protocol"], r["metric"], r["rank"]): float(r["value"]) for r in rows}
    for res in results:
        assert by_key[(res["protocol"], "mAP", "")] == pytest.approx(res["mAP"])
        for k, v in res["ranks"].items():
            assert by_key[(res["protocol"], "rank", k)] == pytest.approx(v)


def test_second_run_reuses_every_step(demo):
    out, _ = demo
    model = out / "run" / "snapshots" / ("snap_iter_%d.caffemodel" % TINY_ITERS)
    before = model.stat().st_mtime_ns
    stdout = run_tool("tools/demo.py", "--tiny", "--quiet", "--out", out)
    assert "reusing" in stdout and "reusing the finished training" in stdout
    assert model.stat().st_mtime_ns == before
    assert (out / "results.txt").read_text() in stdout


def test_resume_continues_from_last_snapshot(tmp_path):
    out = tmp_path / "out"
    run_tool("tools/demo.py", "--tiny", "--quiet", "--out", out, "--until", "train")
    snaps = out / "run" / "snapshots"
    for ext in ("caffemodel", "solverstate"):          # as if stopped before the end
        (snaps / ("snap_iter_%d.%s" % (TINY_ITERS, ext))).unlink()
    last = max(int(p.stem.rsplit("_", 1)[1]) for p in snaps.glob("*.solverstate"))
    assert last < TINY_ITERS
    stdout = run_tool("tools/demo.py", "--tiny", "--quiet", "--out", out, "--resume",
                      "--until", "train")
    assert "resuming from iteration %d" % last in stdout
    assert (snaps / ("snap_iter_%d.caffemodel" % TINY_ITERS)).is_file()
    assert sorted(p.name for p in (out / "run").glob("train.log*")) == ["train.log",
                                                                         "train.log.1"]
    text = (out / "run" / "train.log").read_text()
    assert "Resuming from" in text and "Iteration %d" % last in text
    assert not (out / "results.json").exists()           # --until train stops there


def test_train_tool_writes_log_and_loss_plot(demo, tmp_path):
    out, _ = demo
    log = tmp_path / "logs" / "train.log"
    run_tool("tools/train.py", out / "run" / "solver.prototxt", "--quiet", "--log", log)
    assert "Optimization Done" in log.read_text()
    assert cv2.imread(str(tmp_path / "logs" / "train_losses.png")) is not None


def test_table2_small_setting_two_variants_over_seeds(demo, tmp_path):
    """tools/table2.py --tiny: the study's small setting (two seeds, pretraining, every
    output), mean and std over the seeds in the table, runs reused on a second call."""
    out = tmp_path / "t2"
    run_tool("tools/table2.py", "--tiny", "--quiet", "--out", out, "--variants", "cnn,all")
    parsed = report.parse_table((out / "table2.txt").read_text())
    assert list(parsed) == ["CNN", "ALL"]
    runs = report.load_json(out / "table2.json")
    for run in runs:
        res = run["results"][0]
        per_seed = [report.load_json(out / "main" / ("seed%d" % s) / v / "results.json")[0]
                    for s in (1, 2) for v in ("cnn", "all")
                    if report.load_json(out / "main" / ("seed%d" % s) / v /
                                        "results.json")[0]["name"] == run["name"]]
        r1 = [p["results"][0]["ranks"]["1"] for p in per_seed]
        assert res["seeds"] == 2 and res["ranks"]["1"] == pytest.approx(sum(r1) / 2)
        assert parsed[run["name"]][report.group_title(res)][0] == "%.1f±%.1f" % (
            100 * res["ranks"]["1"], 100 * res["ranks_std"]["1"])
    for name in ("table2_cmc.png", "table2_cmc_common.png", "table2_diagnostics.txt",
                 "main/seed1/cnn/results.json", "main/seed2/all/attention.png",
                 "main/seed1/all/losses.png", "pretrain/seed2/run/train.log"):
        assert (out / name).is_file(), name
    diag = (out / "table2_diagnostics.txt").read_text()
    assert diag.count("ALL ") == 2 and "->" in diag          # saturation start -> end
    pairs = (out / "table2_comparisons.txt").read_text()
    assert pairs.count("ALL over CNN ") == 2 and "TAM over RNN" not in pairs   # rank-1, mAP
    again = run_tool("tools/table2.py", "--tiny", "--quiet", "--out", out,
                     "--variants", "cnn,all")
    assert again.count(": reusing") >= 4          # both variants on both seeds
    assert (out / "table2.txt").read_text() in again
