"""M for tracklets over the same chunks as F, and the ranking of metric-only variants
(paper 3.3, eq. 2; docs/DESIGN.md 1.3-1.4)."""
import numpy as np
import pytest

from reid.evaluation.features import aligned_chunk_pairs, chunk_pair_metric
from reid.evaluation.rerank import metric_ranking


def _toy_metric(a, b):
    """Any pair function of two volumes, not symmetric in its arguments."""
    return 1.0 / (1.0 + np.abs(a - 0.5 * b).reshape(len(a), -1).mean(1))


def test_aligned_chunk_pairs_use_every_chunk_of_both():
    assert aligned_chunk_pairs(1, 1) == [(0, 0)]
    assert aligned_chunk_pairs(3, 3) == [(0, 0), (1, 1), (2, 2)]
    assert aligned_chunk_pairs(2, 5) == [(0, 0), (1, 1), (0, 2), (1, 3), (0, 4)]
    assert aligned_chunk_pairs(4, 1) == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_chunk_metric_equals_an_explicit_loop_over_chunk_pairs():
    rng = np.random.default_rng(0)
    counts_a, counts_b = [1, 3, 2, 4], [2, 1, 5]
    off_a, off_b = np.cumsum([0] + counts_a), np.cumsum([0] + counts_b)
    a = rng.random((off_a[-1], 6, 2, 3, 2))
    b = rng.random((off_b[-1], 6, 2, 3, 2))
    qi, gi = np.meshgrid(np.arange(4), np.arange(3), indexing="ij")
    got = chunk_pair_metric(_toy_metric, a, off_a, b, off_b, qi.ravel(), gi.ravel())
    for p, (i, j) in enumerate(zip(qi.ravel(), gi.ravel())):
        na, nb = counts_a[i], counts_b[j]
        vals = []
        for k in range(max(na, nb)):
            va, vb = a[off_a[i] + k % na], b[off_b[j] + k % nb]
            vals.append(_toy_metric(va[None], vb[None])[0])
        np.testing.assert_allclose(got[p], np.mean(vals), rtol=1e-12)
    # one chunk each is M of the first chunks, as before chunks were averaged
    one = chunk_pair_metric(_toy_metric, a, off_a, b, off_b, [0], [1])
    np.testing.assert_allclose(one, _toy_metric(a[[0]], b[[off_b[1]]]))


def test_metric_only_ranking_scores_every_gallery_item():
    n_q, n_g = 7, 230                       # a gallery larger than any preselection k
    rng = np.random.default_rng(1)
    m = rng.random((n_q, n_g))
    seen = np.zeros((n_q, n_g), int)

    def metric_fn(q, g):
        np.add.at(seen, (q, g), 1)
        return m[q, g]
    ranking = metric_ranking(metric_fn, n_q, n_g, batch_size=97, progress=False)
    assert (seen == 1).all()                # every pair scored exactly once
    assert ranking.k == n_g
    np.testing.assert_array_equal(ranking.order, np.argsort(-m, axis=1, kind="stable"))


def test_pair_auc_on_hand_computed_cases():
    from reid.evaluation.learning import pair_auc, pair_labels
    same = np.array([[1, 0, 0], [0, 1, 0]], bool)
    assert pair_auc([[0.9, 0.1, 0.2], [0.3, 0.8, 0.4]], same) == 1.0
    assert pair_auc([[0.1, 0.9, 0.8], [0.7, 0.2, 0.6]], same) == 0.0
    # positives 0.5, 0.2; negatives 0.5, 0.1, 0.3, 0.4: (1/2 + 1 + 1 + 1 + 0 + 1 + 0 + 0) / 8
    assert pair_auc([[0.5, 0.5, 0.1], [0.3, 0.2, 0.4]], same) == 4.5 / 8
    pids = np.array([3, 3, 5, -1, 0])
    s, v = pair_labels(pids, [0, 2], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(s, [[1, 1, 0, 0, 0], [0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(v, [[0, 1, 1, 0, 1], [1, 1, 0, 0, 1]])


def test_seed_aggregation_mean_and_std():
    from reid.evaluation.report import make_run
    from reid.evaluation.seeds import aggregate

    def run(r1, r5, m, cmc):
        return make_run("X", [{"protocol": "p", "dataset": "mars", "ranks": {"1": r1, "5": r5},
                               "mAP": m, "cmc": cmc}])
    agg = aggregate("X", [run(0.2, 0.5, 0.3, [0.2, 0.4, 0.5]), run(0.4, 0.7, 0.1, [0.4, 0.6])])
    res = agg["results"][0]
    np.testing.assert_allclose([res["ranks"]["1"], res["ranks"]["5"]], [0.3, 0.6])
    np.testing.assert_allclose(res["ranks_std"]["1"], np.std([0.2, 0.4], ddof=1))
    np.testing.assert_allclose([res["mAP"], res["mAP_std"]], [0.2, np.std([0.3, 0.1], ddof=1)])
    np.testing.assert_allclose(res["cmc"], [0.3, 0.5])          # cut to the shorter gallery
    assert res["seeds"] == 2


def _seed_run(name, seed, r1, m, protocol="p"):
    from reid.evaluation.report import make_run
    return make_run(name, [{"protocol": protocol, "ranks": {"1": r1}, "mAP": m,
                            "cmc": [r1]}], seed=seed)


def test_paired_difference_interval_and_verdict():
    """Differences per seed (in points), their t-interval (t_0.975 with 2 degrees of
    freedom = 4.3027) and the verdict, by hand."""
    from reid.evaluation.seeds import paired
    worse = [_seed_run("A", s, r, 0.1) for s, r in ((1, 0.10), (2, 0.20), (3, 0.30))]
    better = [_seed_run("B", s, r, 0.1) for s, r in ((3, 0.34), (1, 0.12), (2, 0.23))]
    p = paired(better, worse, "p")                   # paired by seed, not by order
    np.testing.assert_allclose(p["diffs"], [2, 3, 4])
    half = 4.302653 * 1.0 / np.sqrt(3)
    np.testing.assert_allclose([p["mean"], p["std"], p["low"], p["high"]],
                               [3, 1, 3 - half, 3 + half], rtol=1e-5)
    assert p["verdict"] == "holds" and p["wins"] == 3
    assert paired(worse, better, "p")["verdict"] == "reversed"
    noisy = [_seed_run("C", s, r, 0.1) for s, r in ((1, 0.11), (2, 0.22), (3, 0.27))]
    assert paired(noisy, worse, "p")["verdict"] == "not separated"     # +1, +2, -3
    assert paired(noisy, worse, "p", "mAP")["diffs"] == [0, 0, 0]


def test_study_comparisons_name_each_claim_of_the_paper():
    """Each of the paper's conclusions is one line per metric, paired by seed."""
    from reid.study import CLAIMS, comparisons_text
    order = ("cnn", "cnn_rnn", "cnn_tam", "cnn_diff", "cnn_srm", "all")
    runs = {v: [_seed_run(v, s, 0.1 + 0.01 * i * (s + 1), 0.1, "mars_official")
                for s in (1, 2, 3)] for i, v in enumerate(order)}
    lines = comparisons_text(runs).splitlines()
    for label, _, _ in CLAIMS:
        assert sum(line.startswith(label + " ") for line in lines) == 2   # rank-1 and mAP
    rnn = next(line for line in lines if line.startswith("RNN over mean pooling"))
    assert "+2.0  +3.0  +4.0" in rnn and rnn.endswith("3/3  holds")  # i = 1: s + 1 points
    flat = [line for line in lines if line.startswith("ALL over CNN+SRM")][1]   # mAP
    assert "+0.0  +0.0  +0.0" in flat and flat.endswith("not separated")


def test_phenomenon_gain_off_on_and_its_change():
    """The component's gain over its base per seed, with the phenomenon off and on, and the
    change of that gain (on - off), by hand: gain off 0, 0, 0; on +2, +3, +4 points."""
    from reid.study import phenomenon_text

    def runs(v, values):
        return [_seed_run(v, s, x, 0.1, "mars_official") for s, x in zip((1, 2, 3), values)]
    by_state = {"off": {"cnn": runs("cnn", (0.2, 0.2, 0.2)), "cnn_tam": runs("t", (0.2,) * 3)},
                "on": {"cnn": runs("cnn", (0.1, 0.1, 0.1)),
                       "cnn_tam": runs("t", (0.12, 0.13, 0.14))}}
    text = phenomenon_text("tam", ("cnn", "cnn_tam"), by_state)
    line = {x.split("  ")[0]: x for x in text.split("\nmAP")[0].splitlines()}   # rank-1
    assert "-10.0 -10.0 -10.0" in line["CNN, on - off"]
    assert line["CNN+TAM - CNN, tam off"].endswith("0/3  not separated")
    assert "+2.0  +3.0  +4.0" in line["CNN+TAM - CNN, tam on"]
    assert "+2.0  +3.0  +4.0" in line["gain on - gain off"]
    assert line["gain on - gain off"].endswith("3/3  above 0")
    assert line["CNN, on - off"].endswith("0/3  below 0")


def test_constant_answer_loss_is_the_chance_level_of_the_pair_mix():
    from reid.evaluation.learning import constant_answer_loss, metric_loss_learned
    assert constant_answer_loss(0.5) == pytest.approx(np.log(2))
    assert constant_answer_loss(1 / 3) == pytest.approx(0.6365, abs=1e-4)
    assert not metric_loss_learned(0.62, 1 / 3) and metric_loss_learned(0.55, 1 / 3)
