"""Argument types shared by the sub-commands: a bad value is a usage error (one line, exit 2), never a
traceback from deep inside a library (a negative seed reaching numpy, zero workers reaching a pool)."""

from __future__ import annotations

import argparse


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: steps, workers, resamples)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value
