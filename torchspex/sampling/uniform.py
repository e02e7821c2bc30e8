"""Distinct masks drawn uniformly at random (the ProxySPEX query design).

ProxySPEX (Butler et al., 2025) trains its proxy on masks drawn uniformly from ``{0,1}^n``.
Like shapiq's ``CoalitionSampler`` with size weights ``binom(n, s)``, the masks here are
*distinct* (a repeated mask would waste a model call), and the empty and full masks are always
included. Under uniform weights the "border trick" (enumerate every size whose expected count
exceeds the number of subsets of that size) fires only when the budget covers every mask, so a
budget ``>= 2^n`` returns all ``2^n`` masks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["MAX_PERMUTATION_FEATURES", "uniform_masks"]

#: Up to this many features, masks are drawn as a random permutation of all ``2^n`` integers
#: (exact sampling without replacement, no rejection); above it, by rejecting repeats.
MAX_PERMUTATION_FEATURES = 20

def _bits(codes: Tensor, n_features: int) -> Tensor:
    """Integer codes ``int64 [m]`` -> masks ``bool [m, n]`` (bit ``i`` = feature ``i``)."""
    return ((codes.unsqueeze(1) >> torch.arange(n_features)) & 1).bool()


def mask_keys(masks: Tensor) -> np.ndarray:
    """Masks ``bool [m, n]`` (on the CPU) -> one opaque byte-string key per row (packed bits);
    the key of a mask in the samplers, the plan's count and the evaluator's cache."""
    packed = np.packbits(masks.numpy(), axis=1)
    return packed.view(np.dtype((np.void, packed.shape[1]))).ravel()


def _check(n_features: int, n_samples: int) -> None:
    for name, value, low in (("n_features", n_features, 1), ("n_samples", n_samples, 2)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{name}` must be an int; got {type(value).__name__}.")
        if value < low:
            hint = " (the empty and full masks are always included)" if name == "n_samples" else ""
            raise ValueError(f"`{name}` must be >= {low}{hint}; got {value}.")


def uniform_masks(
    n_features: int, n_samples: int, generator: torch.Generator | None = None
) -> Tensor:
    """Distinct masks drawn uniformly at random, the empty and full masks first.

    Rows ``2..`` are a uniform sample without replacement from the ``2^n - 2`` other masks (each
    feature kept with probability 1/2, repeats rejected). When ``n_samples >= 2^n`` every mask is
    returned once (in random order after the empty and full masks).

    Args:
        n_features: number of features ``n >= 1``.
        n_samples: number of distinct masks wanted, ``>= 2``.
        generator: source of randomness (``None``: a fresh generator seeded with 0).

    Returns:
        ``bool [min(n_samples, 2^n), n]``; row 0 keeps no feature, row 1 keeps all of them
        (for ``n = 1`` these are the only two masks).

    Raises:
        TypeError: if a count is not an int.
        ValueError: if ``n_features < 1`` or ``n_samples < 2``.

    Example:
        >>> masks = uniform_masks(10, 6, torch.Generator().manual_seed(0))
        >>> masks.shape, masks[0].any().item(), masks[1].all().item()
        (torch.Size([6, 10]), False, True)
        >>> uniform_masks(2, 100).shape  # budget >= 2^n: all four masks
        torch.Size([4, 2])
    """
    _check(n_features, n_samples)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    n = n_features
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    if n < 63 and n_samples >= 1 << n:
        n_samples = 1 << n
    n_rest = n_samples - 2
    if n_rest == 0:
        return ends
    if n <= MAX_PERMUTATION_FEATURES or n_rest > (1 << (n - 1)):
        # Codes 1 .. 2^n - 2 are the masks other than empty (0) and full (2^n - 1).
        codes = torch.randperm((1 << n) - 2, generator=generator)[:n_rest] + 1
        return torch.cat([ends, _bits(codes, n)])
    return torch.cat([ends, _rejection(n, n_rest, ends, generator)])


def _rejection(n: int, n_rest: int, ends: Tensor, generator: torch.Generator) -> Tensor:
    """``n_rest`` distinct uniform masks other than ``ends``, drawn in batches, repeats rejected.

    Accepting the first occurrence of each unseen mask in draw order is sequential sampling
    without replacement, so the result is a uniform sample of distinct masks.
    """
    accepted = [ends]
    seen = mask_keys(ends)
    n_have = 0
    while n_have < n_rest:
        missing = n_rest - n_have
        n_draw = int(missing * 1.05) + 16
        draws = torch.rand(n_draw, n, generator=generator) < 0.5
        keys = np.concatenate([seen, mask_keys(draws)])
        _, first = np.unique(keys, return_index=True)
        first.sort()
        new = first[first >= seen.shape[0]][:missing]
        accepted.append(draws[torch.from_numpy(new - seen.shape[0])])
        seen = keys[np.concatenate([np.arange(seen.shape[0]), new])]
        n_have += new.shape[0]
    return torch.cat(accepted[1:])
