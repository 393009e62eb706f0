"""argparse types for the command-line tools: a bad number is refused by name at parse time
(argparse prints `usage` and "argument --lam: ..."), never run with a silent meaning."""
from __future__ import annotations

import argparse
import math


def int_at_least(low: int, meaning: str = ''):
    """An int >= low; `meaning` says what the lowest value does, for the error message."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(
                f"{value} is below {low}" + (f" ({low} {meaning})" if meaning else ''))
        return value
    parse.__name__ = f'integer >= {low}'
    return parse


def finite_float(text):
    """A float that is neither nan nor +-inf."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value
