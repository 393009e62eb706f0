#!/usr/bin/env python3
"""Write a synthetic dataset in an official layout:
data_prep/make_synthetic.py --layout mars|ilidsvid|prid2011 --out DIR --identities N --seed S
Thin wrapper over reid.datasets.synthetic (see --help for size and difficulty options)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere

from reid.datasets.cli import synthetic_main  # noqa: E402

if __name__ == '__main__':
    sys.exit(synthetic_main())
