#!/usr/bin/env python3
"""Prepare mars: data_prep/prep_mars.py SRC OUT (see --help). Thin wrapper over reid.datasets."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere

from reid.datasets.cli import prep_main  # noqa: E402

if __name__ == '__main__':
    sys.exit(prep_main('mars'))
