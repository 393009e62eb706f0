"""Did a component learn? The diagnostics of the Table 2 study beside its ranks (paper 3.2-3.3):

- gate_saturation: the share of the TAM's tanh and the LSTM's gate pre-activations beyond
  +-SATURATED, where their derivatives are nearly 0 (sigmoid'(3) = 0.045, tanh'(3) = 0.010),
  read from a deploy_features net after a forward pass; a feature model whose gates all sit
  there has stopped learning (the collapse that NetConfig.frame_norm prevents);
- pair_auc: the SRM's (or DIFF's) M over all query-gallery pairs of the test set as a
  same/different classifier (area under the ROC curve; 0.5 = chance), not only on the top K
  of d nor on the mined pairs it was trained on;
- metric_loss_learned: the final metric loss against the loss of the best constant answer
  for the pair mix it trains on (ln 2 = 0.693 for 1 positive : 1 negative, the entropy of
  1/3 = 0.637 for NetConfig.metric_negatives = 'mixed', 1 : 2).
"""
import math

import numpy as np

SATURATED = 3.0
CHANCE_PAIR_LOSS = math.log(2)


def _blobs(net, prefix_first, prefix_later, T):
    names = [prefix_first] + ["%s%d" % (prefix_later, t) for t in range(2, T + 1)]
    return [net.blobs[n].data for n in names if n in net.blobs]


def gate_saturation(net, T, threshold=SATURATED):
    """{'lstm': share, 'tam': share} of pre-activations with |x| > threshold in the net's
    last forward pass (keys only for the parts the net has)."""
    out = {}
    for key, first, later in (("lstm", "lstm_x1_r", "lstm_gates"), ("tam", "tam_Uf_seq",
                                                                       "tam_pre")):
        blobs = _blobs(net, first, later, T)
        if blobs:
            x = np.concatenate([b.ravel() for b in blobs])
            out[key] = float(np.mean(np.abs(x) > threshold))
    return out


def pair_auc(m, same, valid=None):
    """Area under the ROC curve of scores m (n_q, n_g) for the labels same (n_q, n_g) over
    the pairs where valid is true (default all): the probability that a random same-identity
    pair scores above a random different-identity pair (ties count 1/2)."""
    m, same = np.asarray(m, float), np.asarray(same, bool)
    keep = np.ones_like(same) if valid is None else np.asarray(valid, bool)
    pos, neg = m[keep & same], m[keep & ~same]
    if pos.size == 0 or neg.size == 0:
        raise ValueError("pair_auc needs same- and different-identity pairs (%d, %d)"
                         % (pos.size, neg.size))
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    # average ranks of ties (1-based)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def pair_labels(pids, q_rows, g_rows):
    """(same, valid) for query rows x gallery columns: same identity; valid leaves out the
    query tracklet itself and the kit's junk (pid -1)."""
    pids = np.asarray(pids)
    q, g = np.asarray(q_rows), np.asarray(g_rows)
    same = pids[q][:, None] == pids[g][None, :]
    valid = (q[:, None] != g[None, :]) & (pids[g] != -1)[None, :] & (pids[q] > 0)[:, None]
    return same, valid


def constant_answer_loss(positive_share):
    """Cross-entropy of the best constant answer when a share p of the pairs is positive."""
    p = positive_share
    return float(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


def metric_loss_learned(final_metric_loss, positive_share=0.5, margin=0.05):
    """Whether the metric head learned: its final loss below that of the best constant
    answer (constant_answer_loss) by more than `margin`."""
    return bool(final_metric_loss < constant_answer_loss(positive_share) - margin)


def saturation_on_test(extractor, dataset, tids, max_clips=64):
    """gate_saturation of a FeatureExtractor's net over the first T-frame chunk of up to
    max_clips test tracklets (evenly spread)."""
    tids = np.asarray(tids)
    pick = tids[np.unique(np.linspace(0, tids.size - 1, min(max_clips, tids.size))
                          .round().astype(int))]
    shares = {}
    for s in range(0, pick.size, extractor.N):
        clips = [dataset.read(int(t), 0, extractor.T, (extractor.height, extractor.width))
                 for t in pick[s:s + extractor.N]]
        extractor._run(clips)
        for k, v in gate_saturation(extractor.net, extractor.T).items():
            shares.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in shares.items()}
