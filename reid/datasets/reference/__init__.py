"""Small reference tables shipped with the repository (README.md in this folder says where
each comes from): the MARS evaluation kit's track tables and query list, and the ten
standard PRID2011 splits.  docs/DESIGN.md §4 (layouts) and §5 (protocols).

    mars_kit_info_dir()      folder with tracks_train_info.mat, tracks_test_info.mat, query_IDX.mat
    prid2011_splits_path()   splits_prid2011.json: [{'train': [...], 'test': [...]}] x 10
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
MARS_KIT_FILES = ('tracks_train_info.mat', 'tracks_test_info.mat', 'query_IDX.mat')
PRID2011_SPLITS = 'splits_prid2011.json'


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: reference table missing from the repository "
                                f"(see {HERE / 'README.md'})")
    return path


def mars_kit_info_dir() -> Path:
    """The MARS kit's info/ tables (without its name lists, which index the images)."""
    folder = HERE / 'mars_info'
    for name in MARS_KIT_FILES:
        _require(folder / name)
    return folder


def prid2011_splits_path() -> Path:
    """The ten PRID2011 train/test splits over 178 persons (89 / 89)."""
    return _require(HERE / PRID2011_SPLITS)
