"""Reports and plots (reid/evaluation/report.py, plots.py) and tools/compare_runs.py.

The outputs must exist and the table must show exactly the JSON numbers.
"""
import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from reid.evaluation import plots, report
from reid.evaluation import protocols as P

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = ["CNN", "CNN+RNN", "CNN+TAM", "CNN+DIFF", "CNN+SRM", "ALL"]


def small_mars(seed):
    rng = np.random.default_rng(seed)
    pids = rng.integers(1, 30, 300)
    pids[:20] = -1
    pids[20:50] = 0
    cams = rng.integers(1, 7, 300)
    q = np.flatnonzero(pids > 0)[::4]
    return pids, cams, q, rng


def make_runs():
    pids, cams, q, rng = small_mars(0)
    codes = rng.normal(size=(31, 8))
    runs = []
    for i, name in enumerate(ABLATIONS):
        feats = codes[pids + 1] + (2.0 - 0.3 * i) * rng.normal(size=(pids.size, 8))
        d = np.linalg.norm(feats[q][:, None] - feats[None], axis=-1)
        runs.append(report.make_run(name, P.evaluate_mars(d, pids, cams, q), mode="x", k=100))
    splits = []
    for s in range(10):
        d = rng.random((20, 20))
        d[np.arange(20), np.arange(20)] -= 0.5
        splits.append((d, np.arange(20), np.arange(20)))
    runs[-1]["results"].append(P.evaluate_two_camera_splits(splits, dataset="ilidsvid"))
    return runs


@pytest.fixture(scope="module")
def runs():
    return make_runs()


def test_write_reports_table_equals_json(runs, tmp_path):
    paths = report.write_reports(runs, tmp_path, "t", title="Table 2")
    for kind in ("table", "csv", "json"):
        assert paths[kind].is_file() and paths[kind].stat().st_size > 0
    loaded = report.load_json(paths["json"])
    table = report.parse_table(paths["table"].read_text())
    assert list(table) == ABLATIONS
    n_checked = 0
    for run in loaded:
        for res in run["results"]:
            cells = table[run["name"]][report.group_title(res)]
            want = [report.pct(res["ranks"][str(k)]) for k in (1, 5, 10, 20)]
            if res["protocol"] == P.TWO_CAMERA_SPLITS:
                want = [f"{w}±{report.pct(res['ranks_std'][str(k)])}"
                        for w, k in zip(want, (1, 5, 10, 20))]
            else:
                want.append(report.pct(res["mAP"]))
            assert cells == want
            n_checked += 1
    assert n_checked == 13
    # runs without the split protocol show dashes there
    assert table["CNN"]["iLIDS-VID (10 splits, mean±std)"] == ["-"] * 4
    text = paths["table"].read_text()
    assert "MARS (official kit)" in text and "MARS (common variant)" in text
    assert P.PROTOCOL_LABELS[P.MARS_OFFICIAL] in text   # protocols explained under the table


def test_json_holds_every_number(runs, tmp_path):
    path = report.save_json(runs, tmp_path / "r.json")
    loaded = report.load_json(path)
    for a, b in zip(runs, loaded):
        for ra, rb in zip(a["results"], b["results"]):
            assert ra["ranks"] == rb["ranks"] and ra["mAP"] == rb["mAP"]
            assert ra["cmc"] == rb["cmc"]
            if "per_query" in ra:
                np.testing.assert_array_equal(ra["per_query"]["ap"], rb["per_query"]["ap"])
    split = loaded[-1]["results"][-1]
    assert len(split["per_split"]) == 10 and len(split["cmc_std"]) == len(split["cmc"])
    no_pq = report.load_json(report.save_json(runs, tmp_path / "s.json",
                                              include_per_query=False))
    assert all("per_query" not in r for run in no_pq for r in run["results"])


def test_no_match_infinite_rank_is_null_in_json(tmp_path):
    pids, cams, q = np.array([1, 1, 2, 2]), np.array([1, 2, 1, 1]), np.array([0, 2])
    with pytest.warns(UserWarning):
        res = P.evaluate_mars_official(np.random.default_rng(0).random((2, 4)), pids, cams, q)
    path = report.save_json(report.make_run("x", res), tmp_path / "x.json")
    data = json.loads(path.read_text())
    assert data["runs"][0]["results"][0]["per_query"]["first_match_rank"][1] is None


def test_csv_values_equal_json(runs, tmp_path):
    path = report.write_csv(runs, tmp_path / "r.csv")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    by_key = {(r["run"], r["protocol"], r["split"], r["metric"], r["rank"]): r for r in rows}
    for run in runs:
        for res in run["results"]:
            for k, v in res["ranks"].items():
                assert float(by_key[(run["name"], res["protocol"], "", "rank", k)]["value"]) == v
            assert float(by_key[(run["name"], res["protocol"], "", "mAP", "")]["value"]) == \
                res["mAP"]
            for i, v in enumerate(res["cmc"]):
                assert float(by_key[(run["name"], res["protocol"], "", "cmc",
                                     str(i + 1))]["value"]) == v
    split = runs[-1]["results"][-1]
    row = by_key[("ALL", P.TWO_CAMERA_SPLITS, "", "rank", "1")]
    assert float(row["std"]) == split["ranks_std"]["1"]
    row = by_key[("ALL", P.TWO_CAMERA, "3", "rank", "1")]
    assert float(row["value"]) == split["per_split"][3]["ranks"]["1"]


def test_bad_results_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"runs": []}')
    with pytest.raises(P.EvaluationInputError, match="bad.json: not a results file"):
        report.load_json(p)
    with pytest.raises(P.EvaluationInputError, match="missing.json: results file not found"):
        report.load_json(tmp_path / "missing.json")
    with pytest.raises(P.EvaluationInputError, match="'name' and 'results'"):
        report.format_table([{"results": []}])


def _png(path):
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_cmc_plot_of_several_runs(runs, tmp_path):
    curves = plots.cmc_curves(runs, P.MARS_OFFICIAL)
    assert [c[0] for c in curves] == ABLATIONS
    _png(plots.plot_cmc(curves, tmp_path / "cmc.png", max_rank=20, title="MARS"))
    split_curves = plots.cmc_curves(runs, P.TWO_CAMERA_SPLITS)
    assert len(split_curves) == 1 and split_curves[0][2] is not None
    _png(plots.plot_cmc(split_curves, tmp_path / "cmc2.png"))
    with pytest.raises(P.EvaluationInputError, match="no curves"):
        plots.plot_cmc([], tmp_path / "none.png")


def test_ranked_list_labels_official_semantics():
    pids = np.array([5, 5, 5, -1, 0, 7, 5])
    cams = np.array([1, 1, 2, 3, 2, 2, 3])
    order = np.array([0, 3, 4, 1, 2, 5, 6])
    cols, labels = plots.ranked_list_labels(order, pids, cams, q_pid=5, q_cam=1, top_k=3)
    assert cols.tolist() == [4, 2, 5] and labels == ["distractor", "right", "wrong"]
    cols, labels = plots.ranked_list_labels(order, pids, cams, 5, 1, top_k=4, skip_junk=False)
    assert labels == ["junk", "junk", "distractor", "junk"]


def test_ranked_list_picture_borders(tmp_path):
    rng = np.random.default_rng(0)
    query = rng.integers(0, 255, (6, 128, 64, 3), dtype=np.uint8)
    labels = ["right", "wrong", "distractor", "junk", "wrong"]
    gallery = [rng.integers(0, 255, (3, 128, 64, 3), dtype=np.uint8) for _ in labels]
    gallery[1] = gallery[1][0]                       # a single frame is fine too
    w, h, b, gap = 40, 80, 3, 10
    row = plots.ranked_list_image(query, gallery, labels, thumb=(w, h), border=b, gap=gap,
                                  max_query_frames=4)
    assert row.dtype == np.uint8 and row.ndim == 3
    tile = w + 2 * b
    for i in range(4):                               # query frames: dark border
        assert tuple(row[0, i * tile]) == plots.QUERY_COLOUR
    x0 = 4 * tile + gap
    for i, lb in enumerate(labels):
        x = x0 + i * (tile + 2)
        for y, xx in [(0, x), (h + 2 * b - 1, x + tile - 1), (h // 2, x + 1)]:
            assert tuple(row[y, xx]) == plots.LABEL_COLOURS[lb], (lb, y, xx)
    img = plots.ranked_list_figure([row, row[:, :200]], tmp_path / "ranked.png")
    assert img.shape[1] == row.shape[1]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "ranked.png")), img)
    with pytest.raises(P.EvaluationInputError, match="5 gallery items but 4 labels"):
        plots.ranked_list_image(query, gallery, labels[:4])
    with pytest.raises(P.EvaluationInputError, match="unknown labels"):
        plots.ranked_list_image(query, gallery, labels[:4] + ["maybe"])
    with pytest.raises(P.EvaluationInputError, match="uint8 BGR"):
        plots.ranked_list_image(query.astype(float), gallery, labels)


def test_attention_plot(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (6, 128, 64, 3), dtype=np.uint8)
    w = rng.random((6, 6))
    w /= w.sum(1, keepdims=True)
    _png(plots.plot_attention(frames, w, tmp_path / "att.png", title="w_{t,i}"))
    _png(plots.plot_attention(frames, w[0], tmp_path / "att1.png"))
    with pytest.raises(P.EvaluationInputError, match="does not match 6 frames"):
        plots.plot_attention(frames, w[:, :5], tmp_path / "bad.png")


def test_running_mean_hand_computed():
    np.testing.assert_allclose(plots.running_mean([1, 2, 3, 4, 10], 2), [1, 1.5, 2.5, 3.5, 7])
    np.testing.assert_allclose(plots.running_mean([4, 2, 6], 3), [4, 3, 4])
    np.testing.assert_allclose(plots.running_mean([4, 2], 1), [4, 2])


def test_loss_plot_mean_over_raw_and_chance_line(tmp_path):
    from reid.run import TrainLog
    log = TrainLog()
    rng = np.random.default_rng(2)
    for it in range(0, 300, 10):
        log.add(it, "metric_loss", 0.7 + 0.1 * rng.random())
        log.add(it, "triplet_loss", 0.3 * rng.random())
        log.add(it, "metric_accuracy", 0.5)
    ax = plots.loss_figure(log).axes[0]
    ys = [np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
    raw = log.outputs["metric_loss"]
    assert any(np.array_equal(y, raw) for y in ys)                        # faint raw values
    mean = plots.running_mean(raw, len(raw) // 10)
    assert any(y.shape == mean.shape and np.allclose(y, mean) for y in ys)
    assert any(np.allclose(y, np.log(2)) for y in ys if y.size == 2)     # chance ln 2
    assert not any(np.array_equal(y, log.outputs["metric_accuracy"]) for y in ys)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "metric_loss (running mean)", "triplet_loss (running mean)", "chance: ln 2 (metric loss)"]
    _png(plots.plot_losses(log, tmp_path / "losses.png"))


def _load_tool():
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "tools/compare_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_runs_tool(runs, tmp_path):
    a = report.save_json(runs[:3], tmp_path / "a.json")
    b = report.save_json(runs[3:] + [runs[0]], tmp_path / "b.json")   # "CNN" twice
    paths = _load_tool().main([str(a), str(b), "--out", str(tmp_path / "cmp"),
                               "--max-rank", "20", "--title", "ablations"])
    table = report.parse_table(paths["table"].read_text())
    assert list(table) == ABLATIONS + ["CNN [b]"]
    assert table["CNN [b]"] == table["CNN"]
    img = _png(paths["cmc"])
    assert paths["cmc"].name == "comparison_cmc.png"
    assert img.shape[1] > 1.8 * img.shape[0]          # two panels: MARS and iLIDS-VID
    merged = report.load_json(paths["json"])
    assert len(merged) == 7
    with pytest.raises(SystemExit, match="not a results file"):
        (tmp_path / "junk.json").write_text("{}")
        _load_tool().main([str(tmp_path / "junk.json"), "--out", str(tmp_path / "o")])


def test_compare_runs_script_runs_standalone(runs, tmp_path):
    a = report.save_json(runs, tmp_path / "a.json")
    out = subprocess.run([sys.executable, str(ROOT / "tools/compare_runs.py"), str(a),
                          "--out", str(tmp_path / "o"), "--protocol", "two_camera_splits"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ALL" in out.stdout
    assert (tmp_path / "o/comparison_cmc_ilidsvid_two_camera_splits.png").is_file()


def test_compare_runs_over_seeds_gives_mean_and_std(runs, tmp_path):
    """Three files, one seed each: one row per name whose numbers are the mean and the
    sample std over the files (hand-computed here from the per-file results)."""
    names = ("CNN", "ALL")
    files, per = [], {n: [] for n in names}
    for s, (i, j) in enumerate(((0, 5), (1, 4), (2, 3)), start=1):
        picked = [dict(runs[i], name="CNN", meta={"seed": s}),
                  dict(runs[j], name="ALL", results=runs[j]["results"][:2],
                       meta={"settings": {"seed": s}})]
        for r in picked:
            per[r["name"]].append(r["results"][0])
        files.append(report.save_json(picked, tmp_path / ("s%d" % s) / "results.json"))
    paths = _load_tool().main([str(f) for f in files] + [
        "--over-seeds", "--out", str(tmp_path / "o")])
    merged = report.load_json(paths["json"])
    assert [m["name"] for m in merged] == list(names)
    for m in merged:
        res = m["results"][0]
        r1 = [p["ranks"]["1"] for p in per[m["name"]]]
        assert res["ranks"]["1"] == pytest.approx(np.mean(r1))
        assert res["ranks_std"]["1"] == pytest.approx(np.std(r1, ddof=1))
        assert res["mAP"] == pytest.approx(np.mean([p["mAP"] for p in per[m["name"]]]))
        assert m["meta"]["seeds"] == [1, 2, 3]
    assert "±" in paths["table"].read_text()
    _png(paths["cmc"])
    lonely = report.save_json(runs[5], tmp_path / "a.json")          # "ALL" only
    with pytest.raises(SystemExit, match="'CNN' is only in .*s1"):
        _load_tool().main([str(files[0]), str(lonely), "--over-seeds",
                           "--out", str(tmp_path / "p")])


def _two_camera(rng, dataset, splits=10):
    items = []
    for _ in range(splits):
        d = rng.random((20, 20))
        d[np.arange(20), np.arange(20)] -= 0.4
        items.append((d, np.arange(20), np.arange(20)))
    return P.evaluate_two_camera_splits(items, dataset=dataset, expected_splits=splits)


def test_compare_runs_one_table3_row_from_three_results_json(runs, tmp_path):
    """ALL on iLIDS-VID, PRID2011 and MARS in three <dataset>/results.json: one row, three
    column groups, one figure with a panel per dataset; a second MARS run of the same name
    is tagged with its folder, not with the useless 'results'."""
    rng = np.random.default_rng(3)
    mars_all = dict(runs[-1], results=runs[-1]["results"][:2])
    files = [report.save_json(report.make_run("ALL", _two_camera(rng, ds)),
                              tmp_path / ds / "results.json") for ds in ("ilidsvid", "prid2011")]
    files.append(report.save_json(mars_all, tmp_path / "mars" / "results.json"))
    files.append(report.save_json(runs[0] | {"name": "ALL"}, tmp_path / "again" / "results.json"))
    paths = _load_tool().main([str(f) for f in files] + ["--out", str(tmp_path / "t3")])
    table = report.parse_table(paths["table"].read_text())
    assert list(table) == ["ALL", "ALL [again]"]
    assert list(table["ALL"]) == ["iLIDS-VID (10 splits, mean±std)",
                                  "PRID2011 (10 splits, mean±std)", "MARS (official kit)",
                                  "MARS (common variant)"]
    assert all("-" not in cells for cells in table["ALL"].values())
    assert table["ALL [again]"]["iLIDS-VID (10 splits, mean±std)"] == ["-"] * 4
    merged = report.load_json(paths["json"])
    assert [m["source"] for m in merged[0]["meta"]["merged"]] == ["ilidsvid", "prid2011",
                                                                  "mars"]
    img = _png(paths["cmc"])
    assert img.shape[1] > 2.7 * img.shape[0]          # three panels side by side


def test_source_tags():
    assert report.source_tags(["o/a.json", "o/b.json"]) == ["a", "b"]
    assert report.source_tags(["o/x/results.json", "o/y/results.json"]) == ["x", "y"]
    assert report.source_tags(["p/x/results.json", "q/x/results.json"]) == ["p", "q"]
    assert report.source_tags(["p/x/r.json", "p/x/r.json"]) == ["p/x/r", "p/x/r"]


def test_one_split_shows_no_spread():
    """A mean over one split is that split: titled by it, without a ±0.0."""
    res = _two_camera(np.random.default_rng(4), "ilidsvid", splits=1)
    res["splits"] = [3]
    assert report.group_title(res) == "iLIDS-VID (split 3)"
    assert report.table_cells(res) == [report.pct(res["ranks"][str(k)]) for k in (1, 5, 10, 20)]
    text = report.format_table(report.make_run("ALL", res))
    assert "±" not in text and "1 splits" not in text
