#!/usr/bin/env python
"""Write every prototxt in prototxt/ from the net generator (reid/nets)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reid.nets.generate import write_all  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="repository root to write prototxt/ into (default: this checkout)")
    args = ap.parse_args()
    files = write_all(args.base)
    print("wrote %d files under %s" % (len(files), os.path.join(args.base, "prototxt")))


if __name__ == "__main__":
    main()
