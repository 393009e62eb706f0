"""The nets of one configuration: train_val, deploy_features, deploy_metric and the solver.

train_val (paper 3, 4.2, docs/DESIGN.md §1.3): the data layer gives 3B sequences of T frames,
[anchors; positives; sampled negatives], all through one CaffeNet trunk, so the three
streams share every conv/fc weight by construction. Hard-negative mining picks, for each
anchor, the nearest other-identity sequence of the batch in F; the triplet loss on F and the
metric loss on the pairs (anchor, positive) = 1 and (anchor, mined negative) = 0 both use it.
With NetConfig.metric_negatives = 'mixed' (default) the metric loss also gets the pairs
(anchor, sampled negative) = 0: the data layer draws that negative uniformly from the other
identities, so half of the SRM's negatives are ordinary ones, not only the hardest.
"""
import json

from caffe import layers as L
from caffe import params as P
from caffe import NetSpec

from reid.nets.layers import constant, fc, python, reshape
from reid.nets.metric import metric_logits
from reid.nets.temporal import feature_model
from reid.nets.trunk import caffenet


def pretrain_net(cfg, classes):
    """The trunk (conv1..fc7_reid) with a softmax identity classifier over `classes`
    identities, every frame labelled with its identity: the stand-in for ImageNet
    pretraining (paper 4.2 starts conv1..conv5 from CaffeNet). Trained on a pool of
    identities disjoint from the study's; its caffemodel initialises every Table-2 variant
    by layer name (`caffe train -weights`), the classifier is left behind."""
    n = NetSpec()
    B, T = cfg.batch_triplets, cfg.seq_len
    n.data, n.label = python("python_layers.sequence_data", "SequenceTripletDataLayer", [],
                             ntop=2, param_str=json.dumps(dict(
                                 cfg.data_params(), split="all", labels="class"),
                                 sort_keys=True))
    _, fc7 = caffenet(n, n.data, cfg.size, train=True)
    n.label_2d = reshape(n.label, 3 * B, 1)
    n.label_tiled = L.Tile(n.label_2d, axis=1, tiles=T)
    n.frame_label = reshape(n.label_tiled, 3 * B * T)
    n.pretrain_classifier = fc(fc7, classes)
    n.pretrain_loss = L.SoftmaxWithLoss(n.pretrain_classifier, n.frame_label)
    n.pretrain_accuracy = L.Accuracy(n.pretrain_classifier, n.frame_label)
    return n.to_proto()


def train_net(cfg):
    n = NetSpec()
    B, T = cfg.batch_triplets, cfg.seq_len
    S = 3 * B
    n.data, n.label = python("python_layers.sequence_data", "SequenceTripletDataLayer", [],
                             ntop=2, param_str=json.dumps(cfg.data_params(),
                                                          sort_keys=True))
    pool5, fc7 = caffenet(n, n.data, cfg.size, train=True, fc_layers=cfg.variant.triplet)
    F, attention = feature_model(n, cfg, pool5, fc7, S)
    if attention is not None:
        n.silence_attention = L.Silence(attention, ntop=0)
    n.F_a, n.F_p, n.F_n = L.Slice(F, slice_param=dict(axis=0), ntop=3)
    n.neg_index, n.neg_label = python(
        "python_layers.pair_mining", "PairMiningLayer", [n.F_a, n.F_p, n.F_n, n.label], ntop=2,
        param_str=json.dumps({"mode": cfg.mining, "seed": cfg.seed}),
        propagate_down=[False] * 4)
    n.silence_mining = L.Silence(n.neg_label, ntop=0)
    if cfg.variant.triplet:
        n.F_neg = L.BatchReindex(F, n.neg_index, propagate_down=[True, False])
        n.triplet_loss = python("python_layers.triplet_loss", "TripletLossLayer",
                                [n.F_a, n.F_p, n.F_neg], loss_weight=1,
                                param_str=json.dumps({"margin": cfg.margin}))
    if cfg.variant.metric:
        _metric_loss(n, cfg, pool5)
    return n.to_proto()


def _metric_loss(n, cfg, pool5):
    B, T = cfg.batch_triplets, cfg.seq_len
    C, H, W = cfg.size.pool5_shape()
    n.pool5_seq = reshape(pool5, 3 * B, T, C, H, W)
    n.pool5_a, n.pool5_p, n.pool5_n = L.Slice(n.pool5_seq, slice_param=dict(axis=0), ntop=3)
    n.pool5_neg = L.BatchReindex(n.pool5_seq, n.neg_index, propagate_down=[True, False])
    negatives = [n.pool5_neg]
    if cfg.metric_negatives == "mixed":     # + the sampled (ordinary) negatives
        negatives.append(n.pool5_n)
    elif cfg.metric_negatives == "mined":
        n.silence_pool5_n = L.Silence(n.pool5_n, ntop=0)
    else:
        raise ValueError("NetConfig.metric_negatives must be 'mixed' or 'mined', got %r"
                         % cfg.metric_negatives)
    k = len(negatives)
    n.pair_a = L.Concat(*[n.pool5_a] * (1 + k), concat_param=dict(axis=0))
    n.pair_b = L.Concat(n.pool5_p, *negatives, concat_param=dict(axis=0))
    n.pair_same = constant((B,), 1)
    n.pair_other = constant((k * B,), 0)
    n.pair_label = L.Concat(n.pair_same, n.pair_other, concat_param=dict(axis=0))
    logits = metric_logits(n, cfg, n.pair_a, n.pair_b, (1 + k) * B)
    n.metric_loss = L.SoftmaxWithLoss(logits, n.pair_label, loss_weight=cfg.metric_weight)
    n.metric_accuracy = L.Accuracy(logits, n.pair_label)


def features_net(cfg):
    """F(x), the attention weights and pool5 of N sequences (input: N*T frames)."""
    n = NetSpec()
    N, T, s = cfg.deploy_batch, cfg.seq_len, cfg.size
    n.data = L.Input(shape=[dict(dim=[N * T, 3, s.height, s.width])])
    pool5, fc7 = caffenet(n, n.data, s, train=False, fc_layers=cfg.variant.triplet)
    F, attention = feature_model(n, cfg, pool5, fc7, N)
    C, H, W = s.pool5_shape()
    n.pool5_seq = reshape(pool5, N, T, C, H, W)
    return n.to_proto()


def metric_net(cfg):
    """M(xi, xj) = softmax(logits)[same] for N pairs of pool5 volumes (N, T, C, H, W)."""
    n = NetSpec()
    N, T = cfg.deploy_batch, cfg.seq_len
    C, H, W = cfg.size.pool5_shape()
    n.pool5_a = L.Input(shape=[dict(dim=[N, T, C, H, W])])
    n.pool5_b = L.Input(shape=[dict(dim=[N, T, C, H, W])])
    logits = metric_logits(n, cfg, n.pool5_a, n.pool5_b, N)
    n.prob = L.Softmax(logits)
    return n.to_proto()


def solver(cfg, net_path, snapshot_prefix, schedule):
    """SGD as CaffeNet fine-tuning usually runs, by a reid.nets.config.Schedule; paths are
    relative to where caffe runs. Gradients are clipped (L2 norm, as Caffe's LRCN recurrent
    nets do): an early blow-up of fc7 otherwise saturates the TAM's tanh/LSTM units and F
    collapses to one point."""
    s = schedule
    return "\n".join([
        'net: "%s"' % net_path,
        "base_lr: %g" % s.base_lr,
        'lr_policy: "step"',
        "gamma: 0.1",
        "stepsize: %d" % s.stepsize,
        "momentum: 0.9",
        "weight_decay: 0.0005",
        "clip_gradients: %g" % s.clip_gradients,
        "max_iter: %d" % s.max_iter,
        "display: %d" % s.display,
        "average_loss: %d" % s.display,
        "snapshot: %d" % s.snapshot,
        'snapshot_prefix: "%s"' % snapshot_prefix,
        "random_seed: %d" % cfg.seed,
        "solver_mode: CPU" if cfg.size.name == "small" else "solver_mode: GPU",
        ""])
