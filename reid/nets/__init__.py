"""The net generator (pycaffe NetSpec): every prototxt in prototxt/ comes from here.

reid.nets.config (sizes, Table-2 variants, NetConfig), trunk (CaffeNet), temporal (mean, RNN,
TAM), metric (DIFF, SRM), build (train_val, deploy nets, solver), generate (files on disk).
"""
from reid.nets.config import PAPER, SIZES, SMALL, TABLE2_LABELS, VARIANTS, NetConfig

__all__ = ["NetConfig", "PAPER", "SMALL", "SIZES", "VARIANTS", "TABLE2_LABELS"]
