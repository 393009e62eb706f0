"""SpatialLSTMLayer: the SRM's six-direction spatial LSTM sweep as a Caffe Python layer.

Paper 3.3, Fig. 5-7; docs/DESIGN.md §1.2 and §2. The readable NumPy reference of the native
"SpatialLSTM" layer, with the same semantics and the same 18 parameter blobs
(direction-major [W_xc (4Hd, C), b_c (4Hd), W_hc (4Hd, Hd)] for T+, T-, W+, W-, H+, H-),
so a caffemodel trained with one loads into the other (same layer name).

    layer {
      name: "srm_sweep" type: "Python" bottom: "E" top: "S6"
      python_param { module: "python_layers.spatial_lstm" layer: "SpatialLSTMLayer"
                     param_str: '{"num_output": 128}' }
    }

param_str (json, all optional but num_output):
    num_output     Hd, the hidden width of each direction (required, > 0)
    weight_filler  {"type": "uniform", "min": -0.08, "max": 0.08} (default) or
                   {"type": "gaussian", "std": 0.01} or {"type": "constant", "value": v}
    weight_std     shorthand for {"type": "gaussian", "std": weight_std}
    bias_filler    default {"type": "constant", "value": 0}
    seed           integer seed for the fillers (default: drawn from the OS)

Bottom (N, C, T, H, W); top (N, 6*Hd, T, H, W). The math lives in reid.ops.spatial_lstm.
Parameter gradients are accumulated into the blobs' diffs, as Caffe's layers do.
"""

import caffe
import numpy as np

from reid.ops import spatial_lstm as ops
from python_layers.params import parse_param_str, report_errors


def parse_params(param_str):
    """The layer's options from its param_str (json; empty means defaults)."""
    p = {k: v for k, v in parse_param_str(param_str, dict.fromkeys(
        ("num_output", "weight_filler", "weight_std", "bias_filler", "seed")),
        "SpatialLSTMLayer").items() if v is not None}
    if "weight_std" in p:
        if "weight_filler" in p:
            raise ValueError("SpatialLSTMLayer param_str: give weight_filler or weight_std, not both")
        p["weight_filler"] = {"type": "gaussian", "std": float(p["weight_std"])}
    if int(p.get("num_output", 0)) <= 0:
        raise ValueError("SpatialLSTMLayer param_str: num_output (Hd) must be a positive integer, got %r"
                         % p.get("num_output"))
    return {"num_output": int(p["num_output"]),
            "weight_filler": p.get("weight_filler", ops.DEFAULT_WEIGHT_FILLER),
            "bias_filler": p.get("bias_filler", ops.DEFAULT_BIAS_FILLER),
            "seed": p.get("seed")}


@report_errors
class SpatialLSTMLayer(caffe.Layer):
    """Six-direction spatial LSTM sweep (SRM core, paper 3.3)."""

    def setup(self, bottom, top):
        if len(bottom) != 1 or len(top) != 1:
            raise ValueError("SpatialLSTMLayer takes one bottom (N, C, T, H, W) and gives one top")
        if bottom[0].data.ndim != 5:
            raise ValueError("SpatialLSTMLayer bottom must be 5-D (N, C, T, H, W), got shape %s"
                             % (bottom[0].data.shape,))
        self.p = parse_params(self.param_str)
        self.hd = self.p["num_output"]
        C = bottom[0].data.shape[1]
        if len(self.blobs) == 0:
            values = ops.init_params(C, self.hd, self.p["seed"], self.p["weight_filler"],
                                     self.p["bias_filler"])
            for v in values:
                self.blobs.add_blob(*v.shape)
                self.blobs[len(self.blobs) - 1].data[...] = v
        self.cache = None

    def reshape(self, bottom, top):
        N, C, T, H, W = bottom[0].data.shape
        if self.blobs[0].data.shape[1] != C:
            raise ValueError("SpatialLSTMLayer: bottom has %d channels but W_xc expects %d"
                             % (C, self.blobs[0].data.shape[1]))
        top[0].reshape(N, 6 * self.hd, T, H, W)

    def _params(self):
        return [b.data for b in self.blobs]

    def forward(self, bottom, top):
        y, self.cache = ops.sweep_forward(bottom[0].data, self._params())
        top[0].data[...] = y

    def backward(self, top, propagate_down, bottom):
        if self.cache is None:
            raise RuntimeError("SpatialLSTMLayer: backward called before forward")
        dx, grads = ops.sweep_backward(top[0].diff, self.cache)
        for blob, g in zip(self.blobs, grads):
            blob.diff[...] += g
        if propagate_down[0]:
            bottom[0].diff[...] = dx
