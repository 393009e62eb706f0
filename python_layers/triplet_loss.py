"""TripletLossLayer: the triplet loss on the TAM features F (paper 3.2, docs/DESIGN.md §1.3).

Features are L2-normalised, compared by plain Euclidean distance, and the loss is averaged
over the triplets that violate the margin (reid.ops.triplet has the exact definition).

    layer {
      name: "triplet" type: "Python"
      bottom: "F_anchor" bottom: "F_positive" bottom: "F_negative"
      top: "triplet_loss" top: "triplet_violating"       # second top optional
      loss_weight: 1 loss_weight: 0
      python_param { module: "python_layers.triplet_loss" layer: "TripletLossLayer"
                     param_str: '{"margin": 0.3}' }
    }

Bottoms: anchor, positive, negative features, each (B, D) (or (B, D, 1, 1)). Tops: the scalar
loss and, optionally, the fraction of the B triplets that violate the margin (a monitor, give
it loss_weight 0). Python layers are not loss layers by type, so the prototxt must give the
first top ``loss_weight: 1`` (Caffe then puts the weight into its diff, used by backward).
"""

import caffe
import numpy as np

from reid.ops import triplet
from python_layers.params import blob_list, parse_params, report_errors


@report_errors
class TripletLossLayer(caffe.Layer):
    """Triplet loss with margin on L2-normalised features (paper 3.2)."""

    def setup(self, bottom, top):
        self.margin = float(parse_params(self, {"margin": triplet.DEFAULT_MARGIN})["margin"])
        if len(bottom) != 3:
            raise ValueError("TripletLossLayer needs 3 bottoms (anchor, positive, negative), got %d"
                             % len(bottom))
        if len(top) not in (1, 2):
            raise ValueError("TripletLossLayer gives 1 or 2 tops (loss[, violating fraction]), got %d"
                             % len(top))
        self.cache = None

    def reshape(self, bottom, top):
        shapes = [b.data.shape for b in blob_list(bottom)]
        if len(set(shapes)) != 1:
            raise ValueError("TripletLossLayer: bottoms differ in shape: %s" % shapes)
        for t in blob_list(top):
            t.reshape(1)

    def _flat(self, b):
        return b.data.reshape(b.data.shape[0], -1)

    def forward(self, bottom, top):
        loss, frac, self.cache = triplet.triplet_forward(*(self._flat(b) for b in blob_list(bottom)),
                                                         margin=self.margin)
        top[0].data[0] = loss
        if len(top) > 1:
            top[1].data[0] = frac

    def backward(self, top, propagate_down, bottom):
        grads = triplet.triplet_backward(self.cache, float(top[0].diff[0]))
        for b, g, down in zip(blob_list(bottom), grads, propagate_down):
            if down:
                b.diff[...] = g.reshape(b.diff.shape)
