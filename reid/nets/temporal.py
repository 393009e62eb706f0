"""Feature learning over time: F(x) from the T frame features f_i = fc7 (paper 3.2).

- mean: F = (1/T) sum_i f_i (the CNN rows of Table 2);
- rnn:  an LSTM over f_1..f_T, F = (1/T) sum_t h_t (CNN+RNN);
- tam:  the temporal attention model of docs/DESIGN.md §1.1 (Fig. 3, 4): at each step t
        a_{t,i} = w . tanh(U f_i + V h_{t-1} + W z_{t-1} + b), xbar_t = sum_i softmax(a_t)_i f_i
        (eq. 3), h_t = LSTM(xbar_t, h_{t-1}), F = (1/T) sum_t h_t.

The recurrence is unrolled over T in the prototxt (Caffe's LSTMUnit per step, gate order
i, f, o, g; weights W_xc, b_c, W_hc shared across steps by param name). h_0 = c_0 = z_0 = 0,
so the h_{t-1} and z_{t-1} terms are left out at t = 1.
"""
from caffe import layers as L
from caffe import params as P

from reid.nets.layers import add, constant, fc, python, reshape


FRAME_NORMS = ("rms", "none")
RMS_EPS = 1e-2     # relative to a mean square of fc7 of order 1..100


def frame_features(n, cfg, fc7):
    """f_i, the frame features every temporal model reads (the paper takes fc7 as it is).

    'rms' (default, not in the paper): f_i = fc7_i / sqrt(mean_j fc7_ij^2 + eps), so that f_i
    has unit root mean square. With Xavier fillers the TAM's U f_i and the LSTM's W_xc xbar_t
    then start with unit-variance pre-activations, and they stay in range when fc7 grows
    during training (raw fc7 grows from RMS ~3 to ~30 at lr 3e-3, which saturates every gate
    and collapses F to one point). Built from BVLC layers: Power, Reduction, Power, Scale."""
    if cfg.frame_norm not in FRAME_NORMS:
        raise ValueError("NetConfig.frame_norm must be one of %s, got %r"
                         % (FRAME_NORMS, cfg.frame_norm))
    if cfg.frame_norm == "none":
        return fc7
    n.fc7_sq = L.Power(fc7, power=2)
    n.fc7_ms = L.Reduction(n.fc7_sq, axis=1, operation=P.Reduction.SUM,
                           coeff=1.0 / cfg.size.fc)
    n.fc7_inv_rms = L.Power(n.fc7_ms, power=-0.5, shift=RMS_EPS)
    n.f = L.Scale(fc7, n.fc7_inv_rms, axis=0)
    return n.f


def feature_model(n, cfg, pool5, fc7, S):
    """Adds F (S, D) to n; returns (F, attention) where attention is (S, T, T) or None.

    The metric-only variants (CNN+DIFF, CNN+SRM) train no F; theirs is the mean over T of
    pool5, which their metric loss does train, so that mining chooses their negatives by
    something they learn (not by an untrained fc7, a fixed random projection of pool5)."""
    T, D1 = cfg.seq_len, cfg.size.fc
    if not cfg.variant.triplet:
        C, H, W = cfg.size.pool5_shape()
        n.pool5_frames = reshape(pool5, S, 1, T, C * H * W)
        n.pool5_mean = L.Pooling(n.pool5_frames, pool=P.Pooling.AVE, kernel_h=T, kernel_w=1,
                                 stride=1)
        n.F = reshape(n.pool5_mean, S, C * H * W)
        return n.F, None
    fc7 = frame_features(n, cfg, fc7)
    if cfg.variant.temporal == "mean":
        n.fc7_frames = reshape(fc7, S, 1, T, D1)
        n.fc7_mean = L.Pooling(n.fc7_frames, pool=P.Pooling.AVE, kernel_h=T, kernel_w=1,
                               stride=1)
        n.F = reshape(n.fc7_mean, S, D1)
        return n.F, None
    n.fc7_seq = reshape(fc7, S, T, D1)
    if cfg.variant.temporal == "rnn":
        steps = L.Slice(n.fc7_seq, slice_param=dict(axis=1), ntop=T)
        for t, top in enumerate(steps if T > 1 else [steps], 1):
            setattr(n, "f_t%d" % t, top)
        return _lstm(n, cfg, S, lambda t, h, c: getattr(n, "f_t%d" % t)), None
    return _tam(n, cfg, fc7, S)


def _lstm(n, cfg, S, step_input):
    """Unrolled LSTM; step_input(t, h_prev, c_prev) gives x_t. Returns F = mean of h_t."""
    T, D2 = cfg.seq_len, cfg.size.lstm
    n.lstm_c0 = constant((1, S, D2), 0)
    n.lstm_cont0 = constant((1, S), 0)
    if T > 1:
        n.lstm_cont = constant((1, S), 1)
    h = c = None
    hs = []
    for t in range(1, T + 1):
        x = step_input(t, h, c)
        gx = setattr_(n, "lstm_x%d" % t, fc(x, 4 * D2, share="lstm_xc"))
        gx = setattr_(n, "lstm_x%d_r" % t, reshape(gx, 1, S, 4 * D2))
        if h is not None:
            gh = setattr_(n, "lstm_hc%d" % t, fc(h, 4 * D2, share="lstm_hc", bias=False, axis=2))
            gx = setattr_(n, "lstm_gates%d" % t, add(gx, gh))
        # cont = 0 at t = 1 zeroes the forget gate, so c_0 only needs the right shape
        cont = n.lstm_cont0 if h is None else n.lstm_cont
        c, h = L.LSTMUnit(n.lstm_c0 if c is None else c, gx, cont, ntop=2,
                          name="lstm_unit%d" % t)
        setattr(n, "c%d" % t, c)
        setattr(n, "h%d" % t, h)
        hs.append(h)
    n.silence_c = L.Silence(c, ntop=0)   # the last cell state feeds nothing
    n.h_mean = add(*hs, coeff=[1.0 / T] * T) if T > 1 else L.Power(hs[0])
    n.F = reshape(n.h_mean, S, D2)
    return n.F


def _tam(n, cfg, fc7, S):
    """The TAM of docs/DESIGN.md §1.1; returns (F, attention (S, T, T))."""
    T, K = cfg.seq_len, cfg.size.att
    n.tam_Uf = fc(fc7, K, share="tam_U")                      # U f_i + b, every frame once
    n.tam_Uf_seq = reshape(n.tam_Uf, S, T, K)
    ctx = {}

    def attend(t, h, c):
        pre = n.tam_Uf_seq
        if h is not None:
            q = setattr_(n, "tam_Vh%d" % t, fc(h, K, share="tam_V", bias=False, axis=2))
            q = setattr_(n, "tam_Vh%d_r" % t, reshape(q, S, 1, K))
            z = {"context": ctx.get("xbar"), "cell": c, "none": None}[cfg.tam_context]
            if z is not None:
                axis = 2 if cfg.tam_context == "cell" else 1
                wz = setattr_(n, "tam_Wz%d" % t, fc(z, K, share="tam_W", bias=False, axis=axis))
                wz = setattr_(n, "tam_Wz%d_r" % t, reshape(wz, S, 1, K))
                q = setattr_(n, "tam_q%d" % t, add(q, wz))
            q = setattr_(n, "tam_q%d_tiled" % t, L.Tile(q, axis=1, tiles=T))
            pre = setattr_(n, "tam_pre%d" % t, add(n.tam_Uf_seq, q))
        act = setattr_(n, "tam_tanh%d" % t, L.TanH(pre))
        a = setattr_(n, "tam_a%d" % t, fc(act, 1, share="tam_w", bias=False, axis=2))
        a = setattr_(n, "tam_a%d_r" % t, reshape(a, S, T))
        xbar, w = _attention_average(cfg, n.fc7_seq, a)
        setattr(n, "tam_xbar%d" % t, xbar)
        setattr(n, "tam_w%d" % t, w)
        ctx["xbar"] = xbar
        ctx.setdefault("weights", []).append(w)
        return xbar

    F = _lstm(n, cfg, S, attend)
    ws = ctx["weights"]
    n.attention_flat = L.Concat(*ws, concat_param=dict(axis=1)) if T > 1 else L.Power(ws[0])
    n.attention = reshape(n.attention_flat, S, T, T)
    return F, n.attention


def _attention_average(cfg, features, scores):
    """AttentionAverage, native or Python (paper eq. 3); tops (xbar, weights)."""
    if cfg.impl == "python":
        return python("python_layers.attention_average", "AttentionAverageLayer",
                      [features, scores], ntop=2)
    return L.AttentionAverage(features, scores, ntop=2)


def setattr_(n, name, top):
    """setattr that returns the top, so the unrolled steps read as straight-line code."""
    setattr(n, name, top)
    return top
