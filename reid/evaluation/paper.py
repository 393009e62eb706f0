"""The published numbers of the paper, to print beside ours (never used to tune anything).

Source: Z. Zhou, Y. Huang, W. Wang, L. Wang, T. Tan, "See the Forest for the Trees: Joint
Spatial and Temporal Recurrent Neural Networks for Video-based Person Re-identification",
CVPR 2017: Table 3 (comparison with the state of the art, row "Ours": ALL; iLIDS-VID and
PRID2011 fine-tuned from the MARS model, paper 4.3) and Table 2 (the MARS ablations).
Numbers in %, as printed; the paper gives rank 1, 5, 20 and, for MARS, mAP.
"""
from __future__ import annotations

from .protocols import MARS_OFFICIAL, TWO_CAMERA_SPLITS

CITATION = ("Zhou et al., See the Forest for the Trees: Joint Spatial and Temporal Recurrent "
            "Neural Networks for Video-based Person Re-identification, CVPR 2017")
RANKS = (1, 5, 20)

# Table 3, row "Ours" (the ALL net).
TABLE3 = {
    "ilidsvid": {"R1": 55.2, "R5": 86.5, "R20": 97.0},
    "prid2011": {"R1": 79.4, "R5": 94.4, "R20": 99.3},
    "mars": {"R1": 70.6, "R5": 90.0, "R20": 97.6, "mAP": 50.7},
}
TABLE3_ORDER = ("ilidsvid", "prid2011", "mars")      # the column groups of Table 3

# Table 2: the six ablations on MARS.
TABLE2 = {
    "CNN": {"R1": 58.5, "R5": 76.3, "R20": 85.9, "mAP": 40.3},
    "CNN+RNN": {"R1": 60.3, "R5": 79.2, "R20": 87.0, "mAP": 42.0},
    "CNN+TAM": {"R1": 62.7, "R5": 80.6, "R20": 90.5, "mAP": 43.4},
    "CNN+DIFF": {"R1": 63.0, "R5": 81.1, "R20": 91.5, "mAP": 44.8},
    "CNN+SRM": {"R1": 64.2, "R5": 84.4, "R20": 94.3, "mAP": 46.2},
    "ALL": {"R1": 70.6, "R5": 90.0, "R20": 97.6, "mAP": 50.7},
}


def result(dataset, numbers):
    """A result dict (the shape reid.evaluation.protocols returns, fractions) of published
    numbers: the ranks the paper gives, mAP where it gives one, no CMC curve. MARS is
    scored with the official kit; iLIDS-VID and PRID2011 over their ten splits."""
    two_camera = dataset != "mars"
    res = {"protocol": TWO_CAMERA_SPLITS if two_camera else MARS_OFFICIAL, "dataset": dataset,
           "ranks": {str(k): numbers["R%d" % k] / 100 for k in RANKS},
           "mAP": numbers["mAP"] / 100 if "mAP" in numbers else None, "cmc": [],
           "published": CITATION}
    if two_camera:
        res["num_splits"] = 10
    return res


def table3_run(name="ALL (paper)"):
    """The paper's Table 3 row as a run (reid.evaluation.report.make_run shape)."""
    return {"name": name, "meta": {"source": CITATION + ", Table 3"},
            "results": [result(d, TABLE3[d]) for d in TABLE3_ORDER]}


def table3_points(dataset):
    """{rank: fraction} of the paper's Table 3 on one dataset (for the CMC figure)."""
    return {k: TABLE3[dataset]["R%d" % k] / 100 for k in RANKS}
