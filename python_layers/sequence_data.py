"""SequenceTripletDataLayer: triplets of T-frame clips from a prepared dataset (paper 4.2).

    layer { name: "data" type: "Python" top: "data" top: "label"
      python_param { module: "python_layers.sequence_data" layer: "SequenceTripletDataLayer"
        param_str: '{"source": "data/mars", "batch_triplets": 8, "seq_len": 6,
                     "height": 227, "width": 227, "mean": [104, 117, 123], "mirror": true,
                     "seed": 1, "workers": 2}' } }

Tops: data (3B*T, 3, H, W) float, frames of [anchors; positives; negatives] clip by clip,
BGR minus the Caffe mean; label (3B,) identities ("labels": "pid", default) or their class
index 0..K-1 among the K identities of the split ("labels": "class", for the softmax
classifier of pretraining, reid.nets.build.pretrain_net). "split": "train", "test" or "all". Clips come from reid.datasets.sampler
(one batch per forward); worker processes decode ahead (reid.datasets.Prefetcher).

The frame LMDB stores the original encoded images, so any input size can be read from it.
Resuming: `bin/caffe train -snapshot X.solverstate` exports REID_RESUME_SOLVERSTATE; the
layer starts at that iteration's batch, so a resumed run sees the same data as an
uninterrupted one.
"""
import os
from collections import deque

import caffe
import numpy as np

from python_layers.params import parse_params, report_errors
from reid.datasets import Prefetcher, open_dataset
from reid.datasets.sampler import TripletSampler
from reid.datasets.transform import to_blob
from reid.integrity import read_solverstate
from reid.nets.config import NetConfig

# Those of the generator's NetConfig (the paper net), for a param_str that leaves some out.
DEFAULTS = dict(NetConfig().data_params(), source="", split_index=0, labels="pid")
LABELS = ("pid", "class")


def resume_iteration():
    """The iteration a resumed `caffe train -snapshot` starts at (0 for a fresh run)."""
    path = os.environ.get("REID_RESUME_SOLVERSTATE")
    if not path:
        return 0
    return int(read_solverstate(path).iter)


@report_errors
class SequenceTripletDataLayer(caffe.Layer):
    def setup(self, bottom, top):
        p = self.p = parse_params(self, DEFAULTS)
        if not p["source"] or not os.path.isdir(p["source"]):
            raise IOError("SequenceTripletDataLayer: dataset folder %r does not exist; prepare "
                          "it with data_prep/prep_<dataset>.py" % p["source"])
        if len(top) != 2:
            raise ValueError("SequenceTripletDataLayer gives 2 tops: data, label")
        self.dataset = open_dataset(p["source"], split=p["split_index"])
        if p["labels"] not in LABELS:
            raise ValueError("SequenceTripletDataLayer: labels must be one of %s, got %r"
                             % (LABELS, p["labels"]))
        tracklets = [t for t in self.dataset.tracklets if p["split"] in ("all", t.split)]
        if self.dataset.splits:        # say whose data this is (one line in train.log)
            print("SequenceTripletDataLayer: split %d of %s, %s identities: %s" % (
                p["split_index"], p["source"], p["split"],
                " ".join(map(str, sorted({t.pid for t in tracklets})))), flush=True)
        self.sampler = TripletSampler(tracklets, p["batch_triplets"], p["seq_len"], p["seed"],
                                      p["mirror"])
        self.label_of = ({pid: pid for pid in self.sampler.pids} if p["labels"] == "pid" else
                         {pid: k for k, pid in enumerate(self.sampler.pids)})
        if self.sampler.single:
            print("SequenceTripletDataLayer: %d identities of %s have one tracklet; they serve "
                  "as negatives only" % (len(self.sampler.single), p["source"]), flush=True)
        self.meta = deque()
        self.prefetcher = None
        self.stream = None      # started by the first forward: a net only built (e.g. to
        #                         save its initial weights) starts no worker processes

    def _stream(self, first_batch):
        """Decoded clips in batch order; the metadata of each batch is queued alongside."""
        size, T = (self.p["height"], self.p["width"]), self.p["seq_len"]

        def requests():
            for batch in self.sampler.batches(first_batch):
                self.meta.append(batch)
                for clip in batch:
                    yield clip.tid, clip.start, T
        if self.p["workers"] > 0:
            self.prefetcher = Prefetcher(self.p["source"], workers=self.p["workers"], size=size,
                                         depth=6 * self.p["batch_triplets"])
            return self.prefetcher.imap(requests())
        return (self.dataset.read(tid, start, n, size) for tid, start, n in requests())

    def reshape(self, bottom, top):
        n = 3 * self.p["batch_triplets"]
        top[0].reshape(n * self.p["seq_len"], 3, self.p["height"], self.p["width"])
        top[1].reshape(n)

    def forward(self, bottom, top):
        if self.stream is None:
            self.stream = self._stream(resume_iteration())
        clips = [next(self.stream) for _ in range(3 * self.p["batch_triplets"])]
        batch = self.meta.popleft()
        top[0].data[...] = to_blob(np.stack(clips), self.p["mean"], [m.mirror for m in batch])
        top[1].data[...] = [self.label_of[m.pid] for m in batch]

    def backward(self, top, propagate_down, bottom):
        pass
