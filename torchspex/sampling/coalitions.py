"""Paired coalitions drawn by size, with the weights of the Shapley kernel (the Shapley design).

Shapley-type indices weight every coalition size equally, so the masks that decide them are
spread over all sizes, corners included, not concentrated around ``n / 2`` as uniform masks are.
This module draws the design KernelSHAP-style estimators use (Lundberg & Lee, 2017; Covert &
Lee, 2021; Musco & Witter, "Provably accurate Shapley value estimation via leverage score
sampling", ICLR 2025; Fumagalli et al., "OddSHAP", ICML 2026):

- the empty and the full coalition always come first;
- coalitions come in *pairs* ``(S, N \\ S)``: with paired samples the odd and the even part of
  the set function separate exactly in a weighted least-squares fit, and the Shapley value only
  depends on the odd part ``(f(S) - f(N \\ S)) / 2``;
- sizes are drawn in proportion to the Shapley kernel's mass per size,
  ``mu(s) = (n - 1) / (s (n - s))`` (``sizes="kernel"``), or uniformly over sizes
  (``sizes="leverage"``: the leverage scores of the kernel regression are ``1 / C(n, s)`` per
  coalition, i.e. equal per size), in proportion to the kernel's square root
  (``sizes="sqrt"``, the rule of Witter et al.'s regression-adjusted estimator), or half
  kernel, half uniform (``sizes="mix"``, a defensive mixture);
- a size whose expected count reaches the number of its coalitions is enumerated completely
  (shapiq's "border trick"), so small budgets are not spent on repeats and the corners of the
  cube are covered first;
- the other sizes get a count per size by systematic sampling (each count is the floor or the
  ceiling of its expectation) and distinct coalitions uniformly within the size.

Every coalition carries a weight: the Shapley kernel's mass of its size divided by the number of
coalitions of that size (enumerated sizes) or by the expected count (sampled sizes, a
Horvitz-Thompson weight). A weighted least-squares fit with these weights estimates the
kernel-weighted projection that defines KernelSHAP and the Faithful Shapley interactions (FSII).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from torchspex.sampling.uniform import mask_keys

__all__ = ["SIZE_RULES", "paired_coalitions", "shapley_kernel_mass"]

#: How coalition sizes are drawn.
SIZE_RULES = ("kernel", "mix", "sqrt", "leverage")


def shapley_kernel_mass(n_features: int) -> Tensor:
    """The Shapley kernel's total weight of each coalition size ``s = 0 .. n``, ``float64 [n+1]``.

    ``mu(s) = (n - 1) / (s (n - s))`` for ``0 < s < n`` (the per-coalition kernel
    ``(n - 1) / (C(n, s) s (n - s))`` summed over the ``C(n, s)`` coalitions); the two corners
    have infinite weight (they are constraints, not samples) and are reported as ``inf``.

    Example:
        >>> shapley_kernel_mass(4).tolist()
        [inf, 1.0, 0.75, 1.0, inf]
    """
    n = n_features
    s = torch.arange(n + 1, dtype=torch.float64)
    mass = torch.full((n + 1,), math.inf, dtype=torch.float64)
    if n >= 2:
        inner = s[1:n]
        mass[1:n] = (n - 1) / (inner * (n - inner))
    return mass


def _log_binom(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _binom_float(n: int, k: int) -> float:
    """``C(n, k)`` as a float, ``inf`` where it exceeds the float range."""
    log = _log_binom(n, k)
    return math.exp(log) if log < 709.0 else math.inf


def _random_subsets(n: int, size: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` masks ``bool [count, n]`` with ``size`` features each (repeats possible)."""
    keys = torch.rand(count, n, generator=generator)
    order = torch.argsort(keys, dim=1)[:, :size]
    masks = torch.zeros(count, n, dtype=torch.bool)
    masks.scatter_(1, order, True)
    return masks


def _all_of_size(n: int, size: int) -> Tensor:
    """Every mask with ``size`` features kept, ``bool [C(n, size), n]`` (small counts only)."""
    combos = torch.combinations(torch.arange(n), size) if size else torch.zeros(1, 0).long()
    masks = torch.zeros(combos.shape[0], n, dtype=torch.bool)
    if size:
        masks.scatter_(1, combos, True)
    return masks


def _distinct_pairs(
    n: int, size: int, n_pairs: int, generator: torch.Generator, seen: set[bytes]
) -> Tensor:
    """``n_pairs`` distinct coalitions of ``size`` whose complements are not drawn either;
    ``seen`` (packed keys) is updated with the masks and their complements."""
    accepted: list[Tensor] = []
    while len(accepted) < n_pairs:
        draw = _random_subsets(n, size, int((n_pairs - len(accepted)) * 1.1) + 8, generator)
        rows = _accept(mask_keys(draw), mask_keys(~draw), range(draw.shape[0]),
                       n_pairs - len(accepted), seen)  # fmt: skip
        accepted.extend(draw[r] for r in rows)
    return torch.stack(accepted) if accepted else torch.zeros(0, n, dtype=torch.bool)


def _accept(keys: np.ndarray, co_keys: np.ndarray, rows: range, need: int, seen: set[bytes]
            ) -> list[int]:  # fmt: skip
    """The first ``need`` of ``rows`` whose coalition and complement (packed ``keys``,
    ``co_keys``) are both unseen, each marked seen as it is taken."""
    accepted: list[int] = []
    for r in rows if need > 0 else ():
        key, co_key = keys[r].tobytes(), co_keys[r].tobytes()
        if key in seen or co_key in seen:
            continue
        seen.add(key)
        seen.add(co_key)
        accepted.append(r)
        if len(accepted) == need:
            break
    return accepted


def _first_draws(
    n: int, todo: list[tuple[int, int]], generator: torch.Generator, seen: set[bytes]
) -> list[Tensor] | None:
    """:func:`_distinct_pairs` for every ``(size, n_pairs)`` of ``todo`` in turn, from one
    draw of the random keys of all their first draws (the same numbers, drawn at once: about
    one call per size class less each, which dominated the design at hundreds of features);
    ``None`` where a class needs a second draw (the caller then rewinds the generator and
    draws class by class, so the coalitions are the same either way). ``seen`` is updated."""
    draws = [int(count * 1.1) + 8 if count else 0 for _, count in todo]  # as _distinct_pairs
    if not todo:
        return []
    keys = torch.rand(sum(draws), n, generator=generator)
    order = torch.argsort(keys, dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n).expand_as(order))
    sizes = torch.repeat_interleave(torch.tensor([s for s, _ in todo]), torch.tensor(draws))
    drawn = rank < sizes[:, None]  # each row keeps its `size` smallest keys
    keys_in, keys_out = mask_keys(drawn), mask_keys(~drawn)
    out, start = [], 0
    for (_, count), width in zip(todo, draws):
        accepted = _accept(keys_in, keys_out, range(start, start + width), count, seen)
        if len(accepted) < count:
            return None
        out.append(drawn[torch.tensor(accepted, dtype=torch.long)])
        start += width
    return out


def paired_coalitions(
    n_features: int,
    n_samples: int,
    generator: torch.Generator | None = None,
    sizes: str = "kernel",
) -> tuple[Tensor, Tensor]:
    """Paired coalitions drawn by size, with their Shapley-kernel weights.

    Args:
        n_features: number of features ``n >= 1``.
        n_samples: number of distinct masks wanted, ``>= 2`` (the empty and full masks).
            An odd count beyond the corners leaves one mask unused (pairs come in twos), except
            that every mask is returned when ``n_samples >= 2^n``.
        generator: randomness (``None``: a fresh generator seeded with 0).
        sizes: ``"kernel"`` (sizes in proportion to the Shapley kernel's mass),
            ``"leverage"`` (uniform over sizes: leverage-score sampling), ``"sqrt"`` (the
            kernel's square root) or ``"mix"`` (half kernel, half uniform).

    Returns:
        ``(masks bool [m, n], weights float64 [m])``. Rows 0 and 1 are the empty and the full
        mask (weight ``inf``: they are constraints); the rest come in pairs, row ``2k`` and row
        ``2k + 1`` being complements. The finite weights sum to the kernel's total mass over
        the sizes ``1 .. n - 1`` (in expectation for sampled sizes).

    Raises:
        ValueError: for ``n_features < 1``, ``n_samples < 2`` or an unknown ``sizes``.

    Example:
        >>> masks, weights = paired_coalitions(6, 20, torch.Generator().manual_seed(0))
        >>> masks.shape, bool((masks[2::2] == ~masks[3::2]).all())
        (torch.Size([20, 6]), True)
        >>> masks[:2].sum(dim=1).tolist(), weights[:2].tolist()
        ([0, 6], [inf, inf])
    """
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"`n_features` must be an int >= 1; got {n_features!r}.")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(
            f"`n_samples` must be an int >= 2 (the empty and full masks); got {n_samples!r}."
        )
    if sizes not in SIZE_RULES:
        raise ValueError(f"`sizes` must be one of {SIZE_RULES}; got {sizes!r}.")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    n = n_features
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    inf = torch.full((2,), math.inf, dtype=torch.float64)
    mass = shapley_kernel_mass(n)
    # pair classes: sizes s <= n - s (s = n/2 pairs with itself)
    classes = list(range(1, n // 2 + 1))
    if not classes:  # n == 1: only the two corners exist
        return ends, inf
    # class c covers the coalitions of sizes s and n - s
    # coalitions per class as floats (inf beyond float range: C(n, n / 2) overflows from
    # about 1,030 features)
    n_coal = {s: _binom_float(n, s) * (1 if 2 * s == n else 2) for s in classes}
    class_mass = {s: float(mass[s]) * (1 if 2 * s == n else 2) for s in classes}
    share = {s: _share(sizes, mass, s) * (1 if 2 * s == n else 2) for s in classes}
    budget = n_samples - 2
    enumerated: list[int] = []
    # border trick: enumerate every class whose expected count reaches its size
    while True:
        open_ = [s for s in classes if s not in enumerated]
        if not open_:
            break
        total = sum(share[s] for s in open_)
        full = [s for s in open_ if budget * share[s] / total >= n_coal[s] - 1e-9]
        if not full:
            break
        for s in full:
            enumerated.append(s)
            budget -= round(n_coal[s])
    masks, weights = [ends], [inf]
    for s in sorted(enumerated):
        block = _all_of_size(n, s)
        if 2 * s != n:
            block = torch.cat([block, ~block])
        # pair order: row 2k and 2k+1 complements
        if 2 * s != n:
            half = block.shape[0] // 2
            block = torch.stack([block[:half], block[half:]], dim=1).reshape(-1, n)
        else:
            block = _pair_up_middle(block)
        masks.append(block)
        per = class_mass[s] / n_coal[s]
        weights.append(torch.full((block.shape[0],), per, dtype=torch.float64))
    open_ = [s for s in classes if s not in enumerated]
    n_pairs = budget // 2
    if open_ and n_pairs > 0:
        total = sum(share[s] for s in open_)
        expected = np.array([n_pairs * share[s] / total for s in open_])
        offset = float(torch.rand(1, generator=generator))
        cum = np.floor(np.concatenate([[0.0], np.cumsum(expected)]) + offset)
        counts = np.diff(cum).astype(np.int64)
        seen = {key.tobytes() for key in mask_keys(torch.cat(masks))}
        todo = [(s, count if math.isinf(n_coal[s]) else min(count, int(n_coal[s] // 2)), e)
                for s, count, e in zip(open_, counts.tolist(), expected.tolist()) if count > 0]
        # one draw for all classes where each class samples at most a sixteenth of its pairs
        # (its first draw, 10% + 8 more than it needs, then almost never falls short)
        drawn = None
        if all(16 * count <= n_coal[s] // 2 for s, count, _ in todo):
            state, before = generator.get_state(), set(seen)
            drawn = _first_draws(n, [(s, count) for s, count, _ in todo], generator, seen)
            if drawn is None:
                generator.set_state(state)
                seen = before
        if drawn is None:  # class by class (a class fell short of its first draw, or may)
            drawn = [_distinct_pairs(n, s, count, generator, seen) for s, count, _ in todo]
        for (s, _, e), chosen in zip(todo, drawn):
            pairs = torch.stack([chosen, ~chosen], dim=1).reshape(-1, n)
            masks.append(pairs)
            per = class_mass[s] / (2.0 * e)  # Horvitz-Thompson: mass over expected coalitions
            weights.append(torch.full((pairs.shape[0],), per, dtype=torch.float64))
    return torch.cat(masks), torch.cat(weights)


def _share(sizes: str, mass: Tensor, s: int) -> float:
    """How much of the budget size ``s`` gets, relative to the others, under a size rule."""
    kernel = float(mass[s] / mass[1:-1].sum())
    uniform = 1.0 / (mass.shape[0] - 2)
    if sizes == "kernel":
        return kernel
    if sizes == "sqrt":
        return math.sqrt(kernel)
    if sizes == "mix":
        return 0.5 * kernel + 0.5 * uniform
    return uniform


def _pair_up_middle(block: Tensor) -> Tensor:
    """The size-``n/2`` masks ordered so that rows ``2k`` and ``2k + 1`` are complements."""
    position = {key.tobytes(): i for i, key in enumerate(mask_keys(block))}
    co_keys = [key.tobytes() for key in mask_keys(~block)]
    used = np.zeros(block.shape[0], dtype=bool)
    order = []
    for i in range(block.shape[0]):
        if used[i]:
            continue
        j = position[co_keys[i]]
        used[i] = used[j] = True
        order.extend([i, j])
    return block[torch.tensor(order, dtype=torch.long)]
