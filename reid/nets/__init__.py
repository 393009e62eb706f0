"""The net generator (pycaffe NetSpec): every prototxt in prototxt/ comes from here.

reid.nets.config (sizes, Table-2 variants, NetConfig, solver schedules), trunk (CaffeNet), temporal (mean, RNN,
TAM), metric (DIFF, SRM), build (train_val, deploy nets, solver), generate (files on disk).
"""
from reid.nets.config import (PAPER, SCHEDULES, SIZES, SMALL, SMALL_SCHEDULE, VARIANTS,
                              NetConfig, Schedule)

__all__ = ["NetConfig", "PAPER", "SMALL", "SIZES", "VARIANTS", "Schedule", "SCHEDULES",
           "SMALL_SCHEDULE"]
