"""The sequence sampler: which T-frame clips form each training batch (paper 4.2).

A batch holds B triplets of clips. Anchor: a random tracklet of a random identity; positive:
another tracklet of that identity, from another camera where one exists; negative: a tracklet
of another identity (the candidate pool for in-batch hard-negative mining). Each clip is T
consecutive frames at a random start (tracklets shorter than T loop). Mirroring is drawn
once per batch (probability 1/2) and applies to every clip of it: the SRM compares two clips
location by location, and a mined negative may be any clip of the batch, so only a flip
shared by the whole batch keeps both clips of every pair the same way round.

Batch k depends only on (seed, k), so a run resumed at iteration k sees exactly the batches
an uninterrupted run would.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clip:
    tid: int
    pid: int
    start: int
    mirror: bool


class TripletSampler:
    """Batches of B (anchor, positive, negative) clips over the given tracklets."""

    def __init__(self, tracklets, batch_triplets, seq_len=6, seed=0, mirror=True):
        self.B, self.T, self.seed, self.mirror = batch_triplets, seq_len, seed, mirror
        self.tracklets = {t.tid: t for t in tracklets if t.pid > 0}  # no distractors / junk
        by_pid = {}
        for t in self.tracklets.values():
            by_pid.setdefault(t.pid, []).append(t.tid)
        self.by_pid = {p: sorted(v) for p, v in sorted(by_pid.items())}
        self.anchor_pids = [p for p, v in self.by_pid.items() if len(v) >= 2]
        self.single = sorted(set(self.by_pid) - set(self.anchor_pids))
        if len(self.anchor_pids) < 2 or len(self.by_pid) < 2:
            raise ValueError(
                "sampler: need at least 2 identities with 2 or more tracklets to form triplets; "
                "got %d identities, %d with several tracklets (identities with one tracklet: %s)"
                % (len(self.by_pid), len(self.anchor_pids), self.single[:10]))
        self.pids = list(self.by_pid)

    def batch(self, k):
        """Batch k: 3B clips in the order [anchors; positives; negatives]."""
        rng = np.random.default_rng([self.seed, k])
        # its own stream, so that the clips drawn do not depend on whether mirroring is on
        flip = bool(self.mirror and np.random.default_rng([self.seed, k, 1]).random() < 0.5)
        replace = len(self.anchor_pids) < self.B
        pids = rng.choice(self.anchor_pids, self.B, replace=replace)
        anchors, positives, negatives = [], [], []
        for pid in pids:
            a = int(rng.choice(self.by_pid[pid]))
            anchors.append(self._clip(rng, a, flip))
            positives.append(self._clip(rng, self._positive(rng, a), flip))
            other = self.pids[int(rng.integers(len(self.pids) - 1))]
            other = other if other != pid else self.pids[-1]
            negatives.append(self._clip(rng, int(rng.choice(self.by_pid[other])), flip))
        return anchors + positives + negatives

    def batches(self, first=0):
        k = first
        while True:
            yield self.batch(k)
            k += 1

    def _positive(self, rng, a):
        cam = self.tracklets[a].cam
        same = [t for t in self.by_pid[self.tracklets[a].pid] if t != a]
        other_cam = [t for t in same if self.tracklets[t].cam != cam]
        return int(rng.choice(other_cam or same))

    def _clip(self, rng, tid, flip):
        t = self.tracklets[tid]
        start = int(rng.integers(max(1, t.num_frames - self.T + 1)))
        return Clip(tid, t.pid, start, flip)
