"""Figures (DESIGN.md section 5): CMC curves (paper Fig. 9), ranked lists (Fig. 10),
temporal attention weights (Fig. 1), training losses; and those figures of a scored run
(reid.evaluation.score.Scored) with the frames read from its dataset.

matplotlib is used through its Agg canvas directly (no pyplot, no global backend switch).
Images are NumPy uint8 BGR arrays (OpenCV's convention, as the dataset reader decodes them).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .protocols import EvaluationInputError

# Fig. 10 border colours, BGR: right match green, wrong red, distractor blue; junk (ignored
# by the official protocol) grey.
LABEL_COLOURS = {
    "right": (0, 170, 0),
    "wrong": (0, 0, 220),
    "distractor": (220, 80, 0),
    "junk": (150, 150, 150),
}
QUERY_COLOUR = (40, 40, 40)
THUMB_SIZE = (128, 64)          # frames of the scored-run figures are read at this (H, W)


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


# ----------------------------------------------------------------------------- CMC
def cmc_curves(runs, protocol, dataset=None):
    """[(label, cmc, std or None)] of every run that has ``protocol`` (and ``dataset``)."""
    out = []
    for r in runs:
        for res in r["results"]:
            if res["protocol"] == protocol and (dataset is None or res.get("dataset") == dataset):
                out.append((r["name"], np.asarray(res["cmc"], float),
                            None if res.get("cmc_std") is None else np.asarray(res["cmc_std"])))
                break
    return out


def plot_cmc(curves, path, *, max_rank=None, title=None, legend_rank1=True):
    """Several CMC curves on one figure (like paper Fig. 9); returns the PNG path.

    curves: [(label, cmc)] or [(label, cmc, std)], cmc as fractions, rank 1 first.
    """
    if not curves:
        raise EvaluationInputError("plot_cmc: no curves to plot")
    fig = _new_figure((6.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for c in curves:
        label, cmc = c[0], np.asarray(c[1], float)
        std = np.asarray(c[2], float) if len(c) > 2 and c[2] is not None else None
        if cmc.ndim != 1 or cmc.size == 0:
            raise EvaluationInputError(f"plot_cmc: curve {label!r} must be a non-empty 1-D array")
        n = cmc.size if max_rank is None else min(max_rank, cmc.size)
        x = np.arange(1, n + 1)
        text = f"{label} (R1 {100 * cmc[0]:.1f}%)" if legend_rank1 else label
        line, = ax.plot(x, 100 * cmc[:n], marker="o" if n <= 30 else None, ms=3, label=text)
        if std is not None:
            ax.fill_between(x, 100 * (cmc[:n] - std[:n]), 100 * (cmc[:n] + std[:n]),
                            color=line.get_color(), alpha=0.15, lw=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Rank")
    ax.set_ylabel("Matching rate (%)")
    ax.set_ylim(top=100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


# ----------------------------------------------------------------------------- ranked list
def ranked_list_labels(order_row, pids, cams, q_pid, q_cam, top_k=10, skip_junk=True):
    """Gallery columns and Fig. 10 labels of the first ``top_k`` of one query's ranking.

    Official MARS semantics: right = same pid, other camera; junk = pid -1 or same pid and
    camera (skipped when ``skip_junk``, as the protocol ignores them); distractor = pid 0;
    wrong = any other pid.
    """
    order_row = np.asarray(order_row)
    pids, cams = np.asarray(pids), np.asarray(cams)
    same = pids[order_row] == q_pid
    junk = (pids[order_row] == -1) | (same & (cams[order_row] == q_cam))
    labels = np.where(same, "right", np.where(pids[order_row] == 0, "distractor", "wrong"))
    labels = np.where(junk, "junk", labels)
    keep = ~junk if skip_junk else np.ones(order_row.size, bool)
    cols = order_row[keep][:top_k]
    return cols, [str(s) for s in labels[keep][:top_k]]


def _check_image(name, img):
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise EvaluationInputError(f"{name}: expected a uint8 BGR image (H, W, 3), got "
                                   f"{img.dtype} {img.shape}")
    return img


def _thumb(img, size, colour, border):
    import cv2

    w, h = size
    t = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(t, border, border, border, border, cv2.BORDER_CONSTANT,
                              value=tuple(int(c) for c in colour))


def _frames(name, x):
    """(n, H, W, 3) array or list of (H, W, 3) -> list of frames."""
    if isinstance(x, np.ndarray) and x.ndim == 4:
        x = list(x)
    if isinstance(x, np.ndarray) and x.ndim == 3:
        x = [x]
    return [_check_image(f"{name}[{i}]", f) for i, f in enumerate(x)]


def ranked_list_image(query_frames, gallery, labels, *, thumb=(48, 96), border=4,
                      max_query_frames=4, gap=16, ranks=True):
    """One row of Fig. 10: query frames, then the top-k gallery tracklets with borders.

    query_frames: (n, H, W, 3) uint8 BGR (or a list); up to ``max_query_frames`` evenly
        spaced ones are shown with a dark border.
    gallery: list of top-k tracklets, each an (H, W, 3) frame or (n, H, W, 3) frames (the
        middle frame stands for the tracklet, as in Fig. 10).
    labels: one of right / wrong / distractor / junk per gallery item.
    Returns the uint8 BGR image.
    """
    import cv2

    q = _frames("query_frames", query_frames)
    if not q:
        raise EvaluationInputError("ranked_list_image: no query frames")
    if len(gallery) != len(labels):
        raise EvaluationInputError(f"ranked_list_image: {len(gallery)} gallery items but "
                                   f"{len(labels)} labels")
    bad = [lb for lb in labels if lb not in LABEL_COLOURS]
    if bad:
        raise EvaluationInputError(f"ranked_list_image: unknown labels {bad}; use "
                                   f"{list(LABEL_COLOURS)}")
    pick = np.unique(np.linspace(0, len(q) - 1, min(max_query_frames, len(q))).round().astype(int))
    tiles = [_thumb(q[i], thumb, QUERY_COLOUR, border) for i in pick]
    th = tiles[0].shape[0]
    spacer = np.full((th, gap, 3), 255, np.uint8)
    parts = [np.hstack(tiles), spacer]
    for i, (g, lb) in enumerate(zip(gallery, labels)):
        frames = _frames(f"gallery[{i}]", g)
        t = _thumb(frames[len(frames) // 2], thumb, LABEL_COLOURS[lb], border)
        parts.append(t)
        parts.append(np.full((th, 2, 3), 255, np.uint8))
    row = np.hstack(parts)
    if ranks:   # rank numbers under the gallery thumbnails
        strip = np.full((14, row.shape[1], 3), 255, np.uint8)
        x0 = parts[0].shape[1] + gap
        for i in range(len(gallery)):
            cv2.putText(strip, str(i + 1), (x0 + i * (tiles[0].shape[1] + 2) + 4, 11),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        row = np.vstack([row, strip])
    return row


def ranked_list_figure(rows, path=None, pad=8):
    """Stack ranked-list rows (from :func:`ranked_list_image`) like Fig. 10; write a PNG
    when ``path`` is given.  Returns the image."""
    import cv2

    if not rows:
        raise EvaluationInputError("ranked_list_figure: no rows")
    w = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        out.append(np.pad(r, ((0, pad), (0, w - r.shape[1]), (0, 0)), constant_values=255))
    img = np.vstack(out)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), img):
            raise EvaluationInputError(f"{path}: could not write the image")
    return img


# ----------------------------------------------------------------------------- attention
def plot_attention(frames, weights, path, *, title=None):
    """Frames with their temporal attention weights as bars (like paper Fig. 1, top).

    frames: (T, H, W, 3) uint8 BGR.  weights: (T,) weights w_i, or (T_steps, T) the
    w_{t,i} of every TAM step (paper eq. 3); then the bars show the mean over the steps
    and a heat map shows every step.  Returns the PNG path.
    """
    f = _frames("frames", frames)
    w = np.asarray(weights, dtype=float)
    if w.ndim not in (1, 2) or w.shape[-1] != len(f):
        raise EvaluationInputError(f"plot_attention: weights shape {w.shape} does not match "
                                   f"{len(f)} frames (want (T,) or (steps, T))")
    if not np.all(np.isfinite(w)):
        raise EvaluationInputError("plot_attention: weights must be finite")
    steps = w if w.ndim == 2 else None
    bars = w.mean(0) if w.ndim == 2 else w
    T = len(f)
    nrows = 3 if steps is not None else 2
    fig = _new_figure((max(4.0, 1.1 * T), 2.2 + 1.4 * (nrows - 1)))
    ratios = [2.0, 1.2] + ([1.2] if steps is not None else [])
    gs = fig.add_gridspec(nrows, T, height_ratios=ratios, hspace=0.35)
    for i, img in enumerate(f):
        ax = fig.add_subplot(gs[0, i])
        ax.imshow(img[:, :, ::-1])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{bars[i]:.2f}", fontsize=8)
    ax = fig.add_subplot(gs[1, :])
    ax.bar(np.arange(T), bars, color="tab:green", width=0.6)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_xticks(np.arange(T))
    ax.set_xticklabels([str(i + 1) for i in range(T)], fontsize=8)
    ax.set_ylabel("weight" if steps is None else "mean weight", fontsize=8)
    if steps is not None:
        ax = fig.add_subplot(gs[2, :])
        ax.imshow(steps, aspect="auto", cmap="viridis", vmin=0)
        ax.set_xticks(np.arange(T))
        ax.set_xticklabels([str(i + 1) for i in range(T)], fontsize=8)
        ax.set_yticks(np.arange(steps.shape[0]))
        ax.set_yticklabels([str(t + 1) for t in range(steps.shape[0])], fontsize=8)
        ax.set_ylabel("step t", fontsize=8)
        ax.set_xlabel("frame i", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


# ----------------------------------------------------------------------------- losses
def running_mean(values, window):
    """Trailing mean over the last ``window`` values (fewer at the start)."""
    v = np.asarray(values, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, v.size + 1)
    lo = np.maximum(0, i - int(window))
    return (c[i] - c[lo]) / (i - lo)


def plot_losses(log, path, title=None):
    """Training losses of a reid.run.TrainLog: the raw readings faint, their running mean
    (over ~1/10 of the run) on top, and ln 2 -- the metric loss of a metric net that cannot
    tell same from different pairs (softmax 1/2 on balanced pairs) -- as a line, so that a
    branch that learns nothing shows at a glance. Returns the PNG path."""
    return _save(loss_figure(log, title), path)


def loss_figure(log, title=None):
    """The figure of plot_losses (its axes hold, per loss, the raw and the mean line)."""
    losses = {k: v for k, v in sorted(log.outputs.items()) if k.endswith("loss")}
    fig = _new_figure((6.0, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    for name, values in losses.items():
        x = log.iterations[:len(values)]
        line, = ax.plot(x, values, alpha=0.25, lw=0.8)
        ax.plot(x, running_mean(values, max(1, len(values) // 10)), color=line.get_color(),
                label="%s (running mean)" % name)
    if "metric_loss" in losses:
        ax.axhline(np.log(2), color="grey", ls="--", lw=1, label="chance: ln 2 (metric loss)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "training losses")
    return fig


# ----------------------------------------------------------------------------- scored runs
def default_show(scored, n=4):
    """n queries of the first list of a Scored, evenly spread (tracklet ids)."""
    q = scored.lists[0]["query"]
    return [int(q[i]) for i in np.unique(np.linspace(0, q.size - 1, min(n, q.size)).round()
                                         .astype(int))]


def pick_queries(scored, n=3):
    """Queries for the ranked list: a success, a middling one and a failure where there are
    such (official protocol first-match rank), so the figure is not cherry-picked."""
    res = scored.results[0]
    q = np.asarray(res["per_query"]["query_idx"])
    first = np.asarray(res["per_query"]["first_match_rank"], float)
    ap = np.asarray(res["per_query"]["ap"], float)
    tids = scored.lists[0]["query"]
    order = np.lexsort((-ap, first))          # best first
    picks = [order[0], order[len(order) // 2], order[-1]][:n]
    assert q.size == tids.size, "per-query results and queries differ"
    return [int(tids[i]) for i in dict.fromkeys(int(i) for i in picks)]


def scored_ranked_lists(dataset, scored, query_tids, path, top=10):
    """Fig. 10 of a scored run: per query its frames and the top gallery tracklets (first
    list), bordered right / wrong / distractor (junk skipped, as the official protocol
    ignores it)."""
    entry = scored.lists[0]
    qpos = {int(t): i for i, t in enumerate(entry["query"])}
    gallery = entry["gallery"]
    g_pids, g_cams = dataset.pids[gallery], dataset.cams[gallery]
    rows = []
    for tid in query_tids:
        if int(tid) not in qpos:
            where = "the evaluation" if entry["split"] is None else "split %d" % entry["split"]
            raise ValueError("tracklet %d is not a query of %s" % (tid, where))
        order = entry["ranking"].order[qpos[int(tid)]]
        cols, labels = ranked_list_labels(order, g_pids, g_cams, dataset.pids[tid],
                                          dataset.cams[tid], top_k=top)
        n = dataset.tracklets[tid].num_frames
        query = dataset.read_frames(tid, np.linspace(0, n - 1, min(4, n)).round().astype(int),
                                    THUMB_SIZE)
        shown = [dataset.read_frames(int(g), [dataset.tracklets[int(g)].num_frames // 2],
                                     THUMB_SIZE) for g in gallery[cols]]
        rows.append(ranked_list_image(query, shown, labels))
    ranked_list_figure(rows, path)
    return path


def scored_attention(dataset, scored, tid, path, seq_len, title=None):
    """Fig. 1 of a scored run: the first T frames of a tracklet (the chunk whose TAM weights
    FeatureExtractor keeps) with the attention weights w_{t,i} of every step."""
    if "attention" not in scored.features:
        raise ValueError("the net has no attention output (no TAM)")
    frames = dataset.read(tid, 0, seq_len, THUMB_SIZE)
    return plot_attention(frames, scored.features["attention"][scored.row(tid)], path,
                          title=title)
