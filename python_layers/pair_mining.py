"""PairMiningLayer: choose each anchor's negative inside the batch (paper 4.2, docs/DESIGN.md §1.3).

The pool is the batch's 3B sequences in the order [anchors; positives; negatives] (pool
index k = anchor k, B + k = positive k, 2B + k = the sampled negative k). For every anchor
the layer picks a sequence of another identity from the pool (reid.ops.mining.mine_negatives:
``hard`` = nearest in L2-normalised F, ``semihard`` or ``random``) and outputs its pool index
as a float, ready for Caffe's BatchReindex. Reindexing both the concatenated features and
the concatenated pool5 volumes with the same indices gives the triplet loss and the SRM
branch the same negative:

    layer { name: "F_pool" type: "Concat" bottom: "F_a" bottom: "F_p" bottom: "F_n"
            top: "F_pool" concat_param { axis: 0 } }
    layer { name: "pool5_pool" type: "Concat" bottom: "pool5_a" bottom: "pool5_p" bottom: "pool5_n"
            top: "pool5_pool" concat_param { axis: 0 } }      # (3B, C, T, H, W)
    layer { name: "mine" type: "Python"
            bottom: "F_a" bottom: "F_p" bottom: "F_n" bottom: "label"
            top: "neg_index" top: "neg_label"                    # second top optional
            propagate_down: false propagate_down: false propagate_down: false propagate_down: false
            python_param { module: "python_layers.pair_mining" layer: "PairMiningLayer"
                           param_str: '{"mode": "hard"}' } }
    layer { name: "F_neg" type: "BatchReindex" bottom: "F_pool" bottom: "neg_index"
            top: "F_neg" propagate_down: true propagate_down: false }
    layer { name: "pool5_neg" type: "BatchReindex" bottom: "pool5_pool" bottom: "neg_index"
            top: "pool5_neg" propagate_down: true propagate_down: false }
    # triplet loss on (F_a, F_p, F_neg); SRM pairs (pool5_a, pool5_p) and (pool5_a, pool5_neg)

The ``propagate_down`` lines are required: no gradient flows through the choice, and
BatchReindex refuses to backpropagate into its index bottom (Caffe marks that blob as
needing backward because the mining layer's bottoms do).

Bottoms: features F of anchors, positives, negatives (B, D) each (trailing 1-sized axes
allowed), then the identity labels either as one bottom (3B,) in pool order or as three
bottoms (B,) for anchors, positives, negatives. Tops: the chosen pool index per anchor (B,)
as float, and optionally the chosen negatives' labels (B,).

param_str (json): {"mode": "hard" | "semihard" | "random", "seed": int or null}.
"""

import caffe
import numpy as np

from reid.ops import mining
from python_layers.params import blob_list, parse_params, report_errors


@report_errors
class PairMiningLayer(caffe.Layer):
    """In-batch negative mining for the triplet loss and the SRM pairs (paper 4.2)."""

    def setup(self, bottom, top):
        p = parse_params(self, {"mode": "hard", "seed": None})
        self.mode = p["mode"]
        if self.mode not in mining.MODES:
            raise ValueError("PairMiningLayer param_str: mode %r is not one of %s"
                             % (self.mode, mining.MODES))
        self.rng = np.random.default_rng(p["seed"])
        if len(bottom) not in (4, 6):
            raise ValueError("PairMiningLayer needs bottoms F_anchor, F_positive, F_negative and "
                             "labels (one (3B,) bottom or three (B,) bottoms); got %d bottoms"
                             % len(bottom))
        if len(top) not in (1, 2):
            raise ValueError("PairMiningLayer gives 1 or 2 tops (index[, label]), got %d" % len(top))

    def reshape(self, bottom, top):
        B = bottom[0].data.shape[0]
        for name, b in zip(("positive", "negative"), blob_list(bottom)[1:3]):
            if b.data.shape != bottom[0].data.shape:
                raise ValueError("PairMiningLayer: %s features have shape %s, anchors %s"
                                 % (name, b.data.shape, bottom[0].data.shape))
        n_labels = sum(b.data.size for b in blob_list(bottom)[3:])
        if n_labels != 3 * B:
            raise ValueError("PairMiningLayer: %d labels for a pool of 3 x %d sequences" % (n_labels, B))
        for t in blob_list(top):
            t.reshape(B)

    def forward(self, bottom, top):
        B = bottom[0].data.shape[0]
        feats = np.concatenate([b.data.reshape(B, -1) for b in blob_list(bottom)[:3]])
        labels = np.concatenate([b.data.reshape(-1) for b in blob_list(bottom)[3:]])
        chosen = mining.mine_negatives(feats, labels, np.arange(B), np.arange(B, 2 * B),
                                       mode=self.mode, rng=self.rng)
        top[0].data[...] = chosen
        if len(top) > 1:
            top[1].data[...] = labels[chosen]

    def backward(self, top, propagate_down, bottom):
        # The choice is not differentiable: a zero gradient wherever one is asked for.
        for b, down in zip(blob_list(bottom), propagate_down):
            if down:
                b.diff[...] = 0
