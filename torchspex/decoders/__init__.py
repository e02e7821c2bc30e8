"""Decoders: from value-function queries to a sparse Fourier spectrum (pure tensor math)."""

from torchspex.decoders.base import BudgetTooSmallError, Evaluator, ValueFunction
from torchspex.decoders.exhaustive import MAX_EXHAUSTIVE_FEATURES, all_masks, decode_exhaustive

__all__ = [
    "MAX_EXHAUSTIVE_FEATURES",
    "BudgetTooSmallError",
    "Evaluator",
    "ValueFunction",
    "all_masks",
    "decode_exhaustive",
]
