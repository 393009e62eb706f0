"""Metric learning on pairs of pool5 volumes (paper 3.3, Fig. 5-7, docs/DESIGN.md §1.2).

    D  = pool5(xi) - pool5(xj)                    (P, T, C, H, W), frames aligned t to t
    E  = relu(conv1x1(D))                         C1 channels
    S6 = six-direction spatial LSTM sweep of E    (P, 6 Hd, T, H, W)     [srm]
    G  = relu(conv1x1(S6))                        C2 channels            [srm]
    logits = FC(G or E) -> 2;  M = softmax(logits)[same]

`diff` (CNN+DIFF) is the same head without the spatial RNNs. Layer names are identical in
train and deploy nets, so a trained caffemodel loads into the metric deploy net.
"""
from caffe import layers as L

from reid.nets.layers import conv, diff, fc, python, reshape


def metric_logits(n, cfg, a, b, P):
    """Adds the head for pairs (a[i], b[i]) of pool5 volumes (P, T, C, H, W); returns logits."""
    T, (C, H, W) = cfg.seq_len, cfg.size.pool5_shape()
    s = cfg.size
    n.srm_diff = diff(a, b) if b is not None else a
    n.srm_diff_frames = reshape(n.srm_diff, P * T, C, H, W)
    n.srm_reduce = conv(n.srm_diff_frames, s.srm_in, 1)
    n.srm_reduce_relu = L.ReLU(n.srm_reduce, in_place=True)
    n.srm_E = reshape(n.srm_reduce_relu, P, T, s.srm_in, H, W)
    if cfg.variant.metric == "diff":
        n.metric_fc = fc(n.srm_E, 2)
        return n.metric_fc
    n.srm_volume = _time_to_axis2(n, n.srm_E, P, T, (s.srm_in, H, W))
    n.srm_sweep = _sweep(cfg, n.srm_volume)
    n.srm_sweep_2d = reshape(n.srm_sweep, P, 6 * s.srm_hidden, T * H, W)
    n.srm_fuse = conv(n.srm_sweep_2d, s.srm_out, 1)
    n.srm_fuse_relu = L.ReLU(n.srm_fuse, in_place=True)
    n.metric_fc = fc(n.srm_fuse_relu, 2)
    return n.metric_fc


def _time_to_axis2(n, x, P, T, chw):
    """(P, T, C, H, W) -> (P, C, T, H, W). BVLC Caffe has no Permute layer, so slice the T
    frames apart and concatenate them back along a new axis 2."""
    C, H, W = chw
    parts = L.Slice(x, slice_param=dict(axis=1), ntop=T)
    parts = parts if T > 1 else [parts]
    moved = []
    for t, part in enumerate(parts, 1):
        setattr(n, "srm_frame%d" % t, part)
        r = reshape(part, P, C, 1, H, W)
        setattr(n, "srm_frame%d_r" % t, r)
        moved.append(r)
    return L.Concat(*moved, concat_param=dict(axis=2)) if T > 1 else L.Reshape(
        moved[0], shape=dict(dim=[P, C, 1, H, W]))


def _sweep(cfg, volume):
    """The six-direction spatial LSTM sweep, native or Python (same 18 blobs)."""
    hd = cfg.size.srm_hidden
    if cfg.impl == "python":
        return python("python_layers.spatial_lstm", "SpatialLSTMLayer", [volume],
                      param_str='{"num_output": %d}' % hd)
    return L.SpatialLSTM(volume, spatial_lstm_param=dict(
        num_output=hd, weight_filler=dict(type="uniform", min=-0.08, max=0.08),
        bias_filler=dict(type="constant", value=0)))
