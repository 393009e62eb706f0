#!/usr/bin/env python
"""Draw every generated net with Caffe's draw.py (reid/nets/draw.py): one diagram per size,
variant and net (train_val, deploy_features, deploy_metric) under --out, or with --readme PATH
only the README's crop of the ALL net (the TAM's first two steps and the SRM head)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reid.nets import draw  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/nets", help="folder for the diagrams (default out/nets)")
    ap.add_argument("--sizes", nargs="+", default=["paper", "small"], choices=["paper", "small"])
    ap.add_argument("--ext", default="png", help="png, svg, pdf or dot (default png)")
    ap.add_argument("--readme", metavar="PATH", help="draw only the README's crop, into PATH")
    a = ap.parse_args()
    if a.readme:
        print("wrote", draw.draw_readme_excerpt(a.readme))
        return
    from tqdm import tqdm
    paths = draw.draw_all(a.out, a.sizes, a.ext, progress=lambda it: tqdm(it, desc="nets", unit="net"))
    print("wrote %d diagrams under %s" % (len(paths), a.out))


if __name__ == "__main__":
    main()
