"""tools/table3.py end to end at the CI size (reid.table3; paper 4.3, Table 3): every output,
the table equal to its JSON and CSV, each of the ten fine-tunings on its own split's
training persons, and a re-run that skips finished splits and resumes an interrupted one."""
import csv
import json
import os
import time

import pytest

from reid.datasets import open_dataset
from reid.evaluation import paper, report
from reid.evaluation.protocols import TWO_CAMERA_SPLITS
from reid.testing import run_tool

TWO_CAMERA = ("ilidsvid", "prid2011")


def _table3(out):
    return run_tool("tools/table3.py", "--tiny", "--out", out, "--quiet", timeout=1200)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("table3") / "out"
    return out, _table3(out)


def test_every_output_exists_and_the_table_is_its_json_and_csv(tiny):
    out, stdout = tiny
    for name in ("table3.txt", "table3.csv", "table3.json", "table3_cmc.png"):
        assert (out / name).stat().st_size > 0, name
    for d in ("mars",) + TWO_CAMERA:
        for name in ("results.txt", "results.csv", "results.json", "cmc.png"):
            assert (out / d / name).stat().st_size > 0, (d, name)
    text = (out / "table3.txt").read_text()
    assert text in stdout
    table = report.parse_table(text)
    runs = report.load_json(out / "table3.json")
    assert [r["name"] for r in runs] == list(table) == ["ALL (ours)", "ALL (paper)"]
    with open(out / "table3.csv") as f:
        rows = {(r["run"], r["dataset"], r["metric"], r["rank"]): r for r in csv.DictReader(f)
                if not r["split"]}
    for run in runs:
        assert [res["dataset"] for res in run["results"]] == list(paper.TABLE3_ORDER)
        for res in run["results"]:
            cells = table[run["name"]][report.group_title(res)]
            spread = run["name"] == "ALL (ours)" and res["protocol"] == TWO_CAMERA_SPLITS
            want = [report.pct(res["ranks"][str(k)]) + (
                "±" + report.pct(res["ranks_std"][str(k)]) if spread else "") for k in (1, 5, 20)]
            if res["dataset"] == "mars":
                want.append(report.pct(res["mAP"]))
            assert cells == want, (run["name"], res["dataset"])
            for k in (1, 5, 20):
                row = rows[(run["name"], res["dataset"], "rank", str(k))]
                assert float(row["value"]) == res["ranks"][str(k)]
            if spread:
                assert res["num_splits"] == 10 and len(res["per_split"]) == 10
    paper_row = {res["dataset"]: res for res in runs[1]["results"]}
    for d, numbers in paper.TABLE3.items():
        assert [table["ALL (paper)"][report.group_title(paper_row[d])][i] for i in range(3)] \
            == ["%.1f" % numbers["R%d" % k] for k in (1, 5, 20)]


def test_each_split_fine_tuned_from_mars_on_its_own_training_persons(tiny):
    out, _ = tiny
    mars = sorted((out / "mars" / "run" / "snapshots").glob("*.caffemodel"))[-1]
    for d in TWO_CAMERA:
        with open_dataset(out / "data" / d / d) as ds:
            splits = ds.splits
        assert len(splits) == 10
        for k, split in enumerate(splits):
            log = (out / d / ("split%d" % k) / "train.log").read_text()
            line = next(l for l in log.splitlines()
                        if l.startswith("SequenceTripletDataLayer: split %d of " % k))
            pids = {int(p) for p in line.split(": ")[-1].split()}
            assert pids == set(split["train"]) and not pids & set(split["test"]), (d, k)
            assert "Finetuning from %s" % mars in log, (d, k)
        assert len({json.dumps(s["train"]) for s in splits}) > 1     # ten different halves


def test_rerun_skips_finished_splits_and_resumes_an_interrupted_one(tiny):
    out, _ = tiny
    split = out / "ilidsvid" / "split4"
    snaps = split / "snapshots"
    final = sorted(snaps.glob("*_iter_3.*"))    # caffemodel, solverstate and their record
    assert {p.name for p in final} >= {"snap_iter_3.caffemodel", "snap_iter_3.solverstate"}
    for p in final:                                    # as if killed before iteration 3
        p.unlink()
    logs = {p: p.stat().st_mtime for p in out.glob("*/split*/train.log") if split not in p.parents}
    time.sleep(1)
    stdout = _table3(out)
    assert "reusing the finished training" in stdout                      # MARS
    for d, n in (("ilidsvid", 9), ("prid2011", 10)):
        assert sum("finished, skipped" in l and ("/%s/" % d) in l
                   for l in stdout.splitlines()) == n, d
    assert "resuming from iteration 2" in stdout
    assert (snaps / "snap_iter_3.caffemodel").is_file()
    assert all(p.stat().st_mtime == t for p, t in logs.items())        # no other split retrained
    assert "reusing %s" % os.path.join("prid2011", "results.json") in stdout.replace(
        str(out) + os.sep, "")
