"""Benchmark of gallery search (reid/evaluation/search.py) on synthetic F: index build time,
memory, queries/s and the IVF index's recall@100 against the exact (flat) index.

F is 1,024-d at paper size (fc7 -> TAM feature, paper 4.2), --gallery tracklets (make bench
uses 100,000; the paper-size question is --gallery 1000000) of persons with --per-person
tracklets each: a person's tracklets are its centre plus noise, the queries other draws of
the same persons.  Rows are generated block by block, never all held at once (the index
holds its own float32 copy).  Rows of the table:

- flat (IndexFlatIP, exhaustive): the ground truth top 100 of every query;
- ivf (IndexIVFFlat, --nlist lists trained on 40 nlist rows) at each --nprobe.

queries/s is the index search alone (GalleryIndex.search(exact=False)); tools/search.py then
re-ranks the 2K + 16 candidates of a query by the float64 d read from the feature files.
Memory is the growth of the process's resident set while the index is built.
"""
import argparse
import sys
import time

import numpy as np

from reid.evaluation import search as S

BLOCK = 4096


class SyntheticF:
    """(n, dim) float32 rows made on demand, block by block, the same on every read."""

    def __init__(self, n, dim, per_person, seed=0, noise=0.8):
        self.shape = (n, dim)
        self.noise, self.seed, self.per_person = noise, seed, per_person
        persons = max(1, n // per_person)
        self.centres = np.random.default_rng(seed).standard_normal((persons, dim),
                                                                   dtype=np.float32)

    def block(self, b):
        rng = np.random.default_rng((self.seed, b))
        rows = np.arange(b * BLOCK, min((b + 1) * BLOCK, self.shape[0]))
        person = rows // self.per_person % self.centres.shape[0]
        return self.centres[person] + self.noise * rng.standard_normal(
            (rows.size, self.shape[1]), dtype=np.float32)

    def __getitem__(self, rows):
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(self.shape[0]))
        rows = np.asarray(rows)
        blocks = rows // BLOCK
        out = np.empty((rows.size, self.shape[1]), np.float32)
        for b in np.unique(blocks):
            sel = blocks == b
            out[sel] = self.block(int(b))[rows[sel] - b * BLOCK]
        return out

    def queries(self, n, seed=1):
        """n query features and their persons."""
        rng = np.random.default_rng(seed)
        person = rng.integers(0, self.centres.shape[0], n)
        return self.centres[person] + self.noise * rng.standard_normal(
            (n, self.shape[1]), dtype=np.float32), person

    def person(self, rows):
        return np.asarray(rows) // self.per_person % self.centres.shape[0]


def same_person_recall(F, found, persons):
    """Fraction of each query's person's gallery tracklets among its results (mean)."""
    total = np.bincount(F.person(np.arange(F.shape[0])), minlength=F.centres.shape[0])
    got = [(F.person(f[f >= 0]) == p).sum() / max(total[p], 1) for f, p in zip(found, persons)]
    return float(np.mean(got))


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _build(F, **kw):
    rss, t = _rss_bytes(), time.perf_counter()
    index = S.GalleryIndex.build_from(F, progress=False, **kw)
    return index, time.perf_counter() - t, _rss_bytes() - rss


def _search(index, Q, k):
    t = time.perf_counter()
    _, rows = index.search(Q, k, exact=False)
    return rows, Q.shape[0] / (time.perf_counter() - t)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gallery", type=int, default=100_000, help="gallery tracklets")
    p.add_argument("--dim", type=int, default=1024, help="dimension of F")
    p.add_argument("--per-person", type=int, default=20, help="tracklets per person")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--nprobe", default="8,32,128", help="IVF lists visited, comma-separated")
    args = p.parse_args([] if argv is None else argv)
    import faiss
    F = SyntheticF(args.gallery, args.dim, args.per_person)
    Q, persons = F.queries(args.queries)
    rows = []
    flat, t_build, mem = _build(F, kind="flat")
    truth, qps = _search(flat, Q, args.k)
    rows.append(("flat (exact)", t_build, mem, qps, 1.0,
                 same_person_recall(F, truth, persons)))
    del flat
    nlist = min(args.nlist, args.gallery)
    ivf, t_build, mem = _build(F, kind="ivf", nlist=nlist, train_size=40 * nlist)
    for nprobe in [int(x) for x in args.nprobe.split(",")]:
        ivf.index.nprobe = min(nprobe, nlist)
        found, qps = _search(ivf, Q, args.k)
        rows.append((f"ivf nlist {nlist} nprobe {ivf.index.nprobe}", t_build, mem, qps,
                     S.recall_at_k(found, truth), same_person_recall(F, found, persons)))
    print(f"Gallery search: {args.gallery:,} synthetic tracklets x {args.dim}-d F, "
          f"{args.queries} queries, top {args.k}, faiss {faiss.__version__}, "
          f"{faiss.omp_get_max_threads()} threads")
    head = (f"{'index':<28} {'build s':>8} {'memory GiB':>11} {'queries/s':>10} "
            f"{'recall@' + str(args.k):>11} {'same person':>12}")
    print(head)
    print("-" * len(head))
    for name, tb, m, qps, rec, person in rows:
        print(f"{name:<28} {tb:8.1f} {m / 2**30:11.2f} {qps:10.1f} {rec:11.4f} {person:12.4f}")
    print("recall@k: share of the flat index's top k found; same person: share of the "
          "query person's gallery tracklets in the top k")
    flat_qps = rows[0][3]
    for name, _, _, qps, _, _ in rows[1:]:
        print(f"{name}: {qps / flat_qps:.1f}x the flat index's queries/s (same run)")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
