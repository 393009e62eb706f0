"""Result dicts -> Table-2/Table-3-shaped text, CSV and JSON (docs/DESIGN.md §5).

A *run* is ``{"name": str, "meta": {...}, "results": [result dict, ...]}`` where each result
dict comes from :mod:`reid.evaluation.protocols` (one per dataset/protocol).  The JSON file
(:func:`save_json`) holds every number: rank-k, mAP, the CMC curve, the standard deviations
and per-split numbers of the split protocols, and the per-query AP / first-match ranks.
The text table shows rank-k and mAP in percent with one decimal, exactly the JSON values
times 100 rounded to one decimal (the paper's precision).  Table 2 of the paper is one MARS
column group with the six ablations as rows; Table 3 is iLIDS-VID | PRID2011 | MARS groups.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from .protocols import (DEFAULT_RANKS, MARS_COMMON, MARS_OFFICIAL, PROTOCOL_LABELS,
                        TWO_CAMERA, TWO_CAMERA_SPLITS, EvaluationInputError)

FORMAT = "reid-evaluation-results/1"
DATASET_NAMES = {"mars": "MARS", "ilidsvid": "iLIDS-VID", "prid2011": "PRID2011"}
PROTOCOL_SHORT = {
    MARS_OFFICIAL: "official kit",
    MARS_COMMON: "common variant",
    TWO_CAMERA_SPLITS: "{n} splits, mean±std",
    TWO_CAMERA: "split {split}",
}
_HAS_MAP_COLUMN = (MARS_OFFICIAL, MARS_COMMON)   # Table 3 shows mAP for MARS only


def make_run(name, results, **meta):
    """Bundle a run: a name (row label, e.g. "ALL"), result dicts and free metadata
    (mode, k, lambda, model files, ...)."""
    if isinstance(results, dict):
        results = [results]
    return {"name": str(name), "meta": meta, "results": list(results)}


def pct(x):
    """The table's number format: percent, one decimal."""
    return f"{100.0 * x:.1f}"


# ----------------------------------------------------------------------------- JSON
def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None          # inf first-match rank (no match) / NaN AP -> null
    return obj


_NUMBER_LIST = re.compile(r"\[\s+([-+0-9.eE,\snul]*?)\s+\]")


def save_json(runs, path, include_per_query=True):
    """Write runs (one run dict or a list) to ``path``; returns the path."""
    runs = [runs] if isinstance(runs, dict) else list(runs)
    _check_runs(runs, "save_json")
    if not include_per_query:
        runs = [dict(r, results=[{k: v for k, v in res.items() if k != "per_query"}
                                 for res in r["results"]]) for r in runs]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps({"format": FORMAT, "runs": _jsonable(runs)}, indent=1)
    # lists of numbers on one line each (CMC curves, per-query arrays)
    text = _NUMBER_LIST.sub(lambda mt: "[" + " ".join(mt.group(1).split()) + "]", text)
    tmp.write_text(text)
    tmp.replace(path)
    return path


def load_json(path):
    """Runs from a file written by :func:`save_json` (clear error otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationInputError(f"{path}: results file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EvaluationInputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EvaluationInputError(f"{path}: not a results file of format {FORMAT!r}")
    _check_runs(data["runs"], str(path))
    return data["runs"]


def _check_runs(runs, where):
    for r in runs:
        if not isinstance(r, dict) or "name" not in r or "results" not in r:
            raise EvaluationInputError(f"{where}: a run must be a dict with 'name' and "
                                       "'results' (use make_run)")
        for res in r["results"]:
            for key in ("protocol", "ranks", "mAP", "cmc"):
                if key not in res:
                    raise EvaluationInputError(f"{where}: run {r['name']!r} has a result "
                                               f"without {key!r}")


# ----------------------------------------------------------------------------- table
def group_key(res):
    return (res.get("dataset") or "?", res["protocol"])


def group_title(res):
    ds = DATASET_NAMES.get(res.get("dataset"), str(res.get("dataset") or "?"))
    protocol = res["protocol"]
    split = res.get("split", "?")
    if protocol == TWO_CAMERA_SPLITS and res.get("num_splits") == 1:   # no spread to show
        protocol, split = TWO_CAMERA, (res.get("splits") or ["?"])[0]
    short = PROTOCOL_SHORT.get(protocol, protocol).format(n=res.get("num_splits", "?"),
                                                          split=split)
    return f"{ds} ({short})"


def has_spread(res):
    """Whether a result is a mean over several splits (its cells show ± std)."""
    return res.get("ranks_std") is not None and res.get("num_splits", 2) > 1


def _groups(runs):
    seen = {}
    for r in runs:
        for res in r["results"]:
            seen.setdefault(group_key(res), res)
    return seen


def table_cells(res, ranks=DEFAULT_RANKS):
    """The table's cell strings of one result (rank-k for ``ranks``, then mAP if shown)."""
    std = res["ranks_std"] if has_spread(res) else None
    cells = []
    for k in ranks:
        v = res["ranks"].get(str(k))
        if v is None:
            cells.append("-")
        elif std is not None:
            cells.append(f"{pct(v)}±{pct(std[str(k)])}")
        else:
            cells.append(pct(v))
    if res["protocol"] in _HAS_MAP_COLUMN:
        m_std = res.get("mAP_std")
        cells.append(pct(res["mAP"]) if m_std is None else f"{pct(res['mAP'])}±{pct(m_std)}")
    return cells


def format_table(runs, ranks=DEFAULT_RANKS, title=None):
    """Table-2/3-shaped text: one row per run, one column group per (dataset, protocol)."""
    runs = [runs] if isinstance(runs, dict) else list(runs)
    _check_runs(runs, "format_table")
    groups = _groups(runs)
    heads = {g: [f"R={k}" for k in ranks] + (["mAP"] if g[1] in _HAS_MAP_COLUMN else [])
             for g in groups}
    body = {}
    for r in runs:
        found = {group_key(res): res for res in r["results"]}
        body[r["name"]] = {g: (table_cells(found[g], ranks) if g in found
                               else ["-"] * len(heads[g])) for g in groups}
    width = {g: max([len(h) for h in heads[g]]
                    + [len(c) for row in body.values() for c in row[g]]) for g in groups}
    name_w = max([len("Rank@R"), len("Dataset")] + [len(n) for n in body])

    def cells_line(first, per_group):
        parts = [first.ljust(name_w)]
        for g in groups:
            parts.append(" ".join(c.rjust(width[g]) for c in per_group[g]))
        return " | ".join(parts)

    group_w = {g: len(heads[g]) * (width[g] + 1) - 1 for g in groups}
    lines = []
    if title:
        lines.append(title)
    top = " | ".join(["Dataset".ljust(name_w)]
                     + [group_title(groups[g]).center(group_w[g]) for g in groups])
    lines.append(top)
    lines.append(cells_line("Rank@R", heads))
    lines.append("-" * len(top))
    for name, row in body.items():
        lines.append(cells_line(name, row))
    lines.append("")
    lines.append("Numbers in %. Protocols:")
    for g, res in groups.items():
        label = res.get("protocol_label", PROTOCOL_LABELS.get(g[1], ""))
        lines.append(f"  {group_title(res)}: {label}")
    return "\n".join(lines) + "\n"


def parse_table(text):
    """Inverse of :func:`format_table` for its data rows: {run: {group title: [cells]}}."""
    lines = text.splitlines()
    head = [c.strip() for c in lines[0 if "|" in lines[0] else 1].split("|")]
    start = next(i for i, ln in enumerate(lines) if set(ln) == {"-"}) + 1
    out = {}
    for ln in lines[start:]:
        if not ln.strip():
            break
        parts = [c.strip() for c in ln.split("|")]
        out[parts[0]] = {head[i]: parts[i].split() for i in range(1, len(parts))}
    return out


# ----------------------------------------------------------------------------- CSV
CSV_FIELDS = ("run", "dataset", "protocol", "split", "metric", "rank", "value", "std")


def csv_rows(runs):
    """Long-format rows with every number (rank-k, mAP, CMC; per split as well)."""
    rows = []

    def emit(run, res, split, std_src):
        base = {"run": run, "dataset": res.get("dataset"), "protocol": res["protocol"],
                "split": split}
        rstd = std_src.get("ranks_std", {}) if std_src else {}
        for k, v in res["ranks"].items():
            rows.append(dict(base, metric="rank", rank=int(k), value=v, std=rstd.get(k)))
        rows.append(dict(base, metric="mAP", rank=None, value=res["mAP"],
                         std=(std_src or {}).get("mAP_std")))
        cstd = (std_src or {}).get("cmc_std")
        for i, v in enumerate(res["cmc"]):
            rows.append(dict(base, metric="cmc", rank=i + 1, value=v,
                             std=None if cstd is None else cstd[i]))

    for r in runs:
        for res in r["results"]:
            emit(r["name"], res, None, res)
            for ps in res.get("per_split", []):
                emit(r["name"], ps, ps.get("split"), None)
    return rows


def write_csv(runs, path):
    runs = [runs] if isinstance(runs, dict) else list(runs)
    _check_runs(runs, "write_csv")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in csv_rows(runs):
            w.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_FIELDS})
    return path


def write_reports(runs, out_dir, stem="results", ranks=DEFAULT_RANKS, title=None):
    """Table (.txt), CSV and JSON side by side; returns {kind: path}."""
    runs = [runs] if isinstance(runs, dict) else list(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / f"{stem}.txt"
    table.write_text(format_table(runs, ranks, title))
    return {"table": table, "csv": write_csv(runs, out_dir / f"{stem}.csv"),
            "json": save_json(runs, out_dir / f"{stem}.json")}


def source_tags(sources):
    """Short distinct tags of result files, for rows whose names clash: the file stems, or,
    where those repeat (every file called results.json), the shortest trailing folder path
    that tells the files apart."""
    parts = [Path(s).with_suffix("").parts or (str(s),) for s in sources]
    while (len(parts) > 1 and all(len(p) > 1 for p in parts)
           and len({p[-1] for p in parts}) == 1 and len(set(parts)) == len(parts)):
        parts = [p[:-1] for p in parts]            # drop the shared file name
    tags = [p[-1] for p in parts]
    for k in range(1, max(len(p) for p in parts) + 1):
        tags = ["/".join(p[-k:]) for p in parts]
        if len(set(tags)) == len(tags):
            break
    return tags


def merge_runs(run_lists, sources=None):
    """Runs from several files, one row per run name. Same-name runs whose results lie in
    different (dataset, protocol) groups become one row (e.g. ALL on iLIDS-VID, PRID2011 and
    MARS from three results.json: one Table-3 row); a run that would repeat a group of its
    name's row gets the file's tag (source_tags) appended instead."""
    tags = source_tags(sources) if sources else [str(i) for i in range(len(run_lists))]
    merged, first_tag = {}, {}
    for tag, runs in zip(tags, run_lists):
        for r in runs:
            groups = {group_key(res) for res in r["results"]}
            candidates = [r["name"], f"{r['name']} [{tag}]"] + [
                f"{r['name']} [{tag} {n}]" for n in range(2, len(merged) + 3)]
            name = next(c for c in candidates if c not in merged or not groups & {
                group_key(res) for res in merged[c]["results"]})
            if name not in merged:
                merged[name] = dict(r, name=name, results=list(r["results"]))
                first_tag[name] = tag
                continue
            row = merged[name]
            parts = row["meta"].get("merged") or [dict(row["meta"], source=first_tag[name])]
            row["meta"] = dict(row["meta"], merged=parts + [dict(r["meta"], source=tag)])
            row["results"] = row["results"] + list(r["results"])
    return list(merged.values())
