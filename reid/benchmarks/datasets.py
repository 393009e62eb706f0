"""Benchmark of dataset preparation and reading (docs/DESIGN.md §4).

On a synthetic MARS layout (reid.datasets.synthetic) generated into a temporary folder:

- generation speed of the synthetic layout (frames/s), for scale;
- build throughput of the real MARS prep code (parse + decode-check + LMDB write), frames/s,
  with 1 and 2 reader threads;
- reader throughput: sequences of T = 6 frames decoded and resized to 227 x 227 per second,
  single process (OpenCV default threads and 1 thread) and with a Prefetcher of 1 and 2
  worker processes.

Each number is the best of --repeats runs; ratios are to the first row of each section.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import cv2
import numpy as np


def _best(fn, repeats):
    best, out = float('inf'), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _table(title, rows, unit):
    print(f"\n{title}")
    print(f"  {'case':44s} {unit:>14s} {'ratio':>7s}")
    base = rows[0][1]
    for name, v in rows:
        print(f"  {name:44s} {v:14.1f} {v / base:7.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--identities', type=int, default=60)
    p.add_argument('--sequences', type=int, default=600, help='sequences read per reader case')
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--T', type=int, default=6)
    p.add_argument('--size', type=int, nargs=2, default=(227, 227), help='read size H W')
    p.add_argument('--frame', type=int, nargs=2, default=(128, 64),
                   help='generated frame size H W (real MARS: 256 128)')
    a = p.parse_args(argv)

    from reid.datasets import Prefetcher, open_dataset
    from reid.datasets.build import build_dataset
    from reid.datasets.mars import parse_mars
    from reid.datasets.synthetic import generate

    with tempfile.TemporaryDirectory(prefix='reid-bench-data-') as tmp:
        src = os.path.join(tmp, 'mars_src')
        t = time.perf_counter()
        meta = generate(src, layout='mars', identities=a.identities, seed=0,
                        height=a.frame[0], width=a.frame[1])
        gen_s = time.perf_counter() - t
        nframes = sum(len(r['frames']) for r in meta['tracklets'])
        print(f"synthetic MARS layout: {a.identities} identities, {len(meta['tracklets'])} "
              f"tracklets, {nframes} frames of {meta['config']['height']}x"
              f"{meta['config']['width']} (JPEG); cores: {os.cpu_count()}")

        build_rows = [('generate synthetic layout (for scale)', nframes / gen_s)]
        for workers in (1, 2):
            out = os.path.join(tmp, f'prep{workers}')

            def build():
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    return build_dataset(parse_mars(src), out, workers=workers, progress=False)
            dt, rep = _best(build, a.repeats)
            build_rows.append((f'prep_mars build, {workers} reader thread(s)', rep.num_frames / dt))
        build_rows = build_rows[1:] + build_rows[:1]
        _table('build throughput (parse + decode check + LMDB write)', build_rows, 'frames/s')

        folder = os.path.join(tmp, 'prep2')
        size = tuple(a.size)
        threads = cv2.getNumThreads()
        ds = open_dataset(folder, cv2_threads=None)
        rng = np.random.default_rng(0)
        tids = rng.integers(0, len(ds), a.sequences)
        starts = [int(rng.integers(0, max(1, ds.tracklets[i].num_frames))) for i in tids]
        reqs = [(int(i), s, a.T) for i, s in zip(tids, starts)]
        rows = []
        for nt, label in ((threads, f'single process, OpenCV {threads} threads'),
                          (1, 'single process, OpenCV 1 thread')):
            cv2.setNumThreads(nt)
            dt, _ = _best(lambda: [ds.read(i, s, n, size) for i, s, n in reqs], a.repeats)
            rows.append((label, len(reqs) / dt))
        cv2.setNumThreads(threads)
        for w in (1, 2):
            with Prefetcher(folder, workers=w, size=size) as pf:
                list(pf.imap(reqs[:16]))                      # workers warm
                dt, _ = _best(lambda: sum(1 for _ in pf.imap(reqs)), a.repeats)
            rows.append((f'Prefetcher, {w} worker process(es)', len(reqs) / dt))
        ds.close()
        _table(f'reader throughput (T = {a.T} frames -> {size[0]}x{size[1]}, random tracklets)',
               rows, 'sequences/s')
        print(f"\n  (one training triplet batch of the paper = 3 sequences of T = {a.T})")


if __name__ == '__main__':
    main()
