"""The SPEX query plan: subsampling groups, BCH-coded delays, and the masks they define.

For each of ``C`` groups SPEX draws a random matrix ``M_c in F2^{n x b}``; with the delay matrix
``D = [0; H]`` of a shortened BCH code (``P = n_parity + 1`` rows) it queries the masks

.. math:: x_{c,p,l} = M_c l + d_p \\pmod 2, \\qquad l \\in \\{0,1\\}^b,

``C P 2^b`` queries in all (Kang et al., ICML 2025, and the reference ``sparse-transform``).
Groups may differ in size (``b_c`` per group): :meth:`SPEXPlan.for_budget` fills a budget with
three equal groups first, then enlarges the smallest group, moves bins from the smallest to
the second largest (two large groups and a small one), or adds a smaller group while the
distinct masks still fit (:func:`fill_budget`), instead of rounding down to whole designs.
Frequency ``k`` lands in bin ``j = M_c^T k`` of group ``c``, and the ``P`` delayed observations of
a bin holding only ``k`` carry the signs ``(-1)^{<d_p, k>}``, the BCH parity bits of ``k``.

The masks are generated from ``(M, D)`` on demand, group by group; nothing of size
``C P 2^b x n`` is kept. The sample count is closed-form, so a budget maps to ``b`` at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from torchspex.errors import BudgetTooSmallError
from torchspex.sampling.bch import BCHCode, bch_code, bch_parameters
from torchspex.sampling.uniform import mask_keys

__all__ = [
    "DEFAULT_N_GROUPS",
    "MAX_B",
    "MIN_B",
    "SPEXPlan",
    "default_n_samples",
    "degree_for_budget",
    "fill_budget",
    "min_spex_samples",
    "plan_for_budget",
    "spex_sample_count",
]

#: Subsampling groups (both reference implementations hard-code 3).
DEFAULT_N_GROUPS = 3
#: Smallest ``b`` (``2^b`` bins per group) SPEX accepts, as the reference does.
MIN_B = 3
#: Largest ``b`` a budget is mapped to (``2^20`` bins per group).
MAX_B = 20

#: Most groups :func:`fill_budget` uses (three, plus smaller ones that fill the budget).
MAX_GROUPS = 6
#: Smallest ``b_c`` of a group that :func:`fill_budget` shrinks or adds (4 bins): a small group
#: still separates terms that collide in the large ones.
MIN_FILL_B = 2
#: Bins per feature of the default budget (:func:`default_n_samples`), and its bounds in bins.
DEFAULT_BINS = (48, 512)

#: Count distinct masks exactly (to fit more bins into the budget) only below this many bits.
_DISTINCT_COUNT_BITS = 1 << 24


def n_delays(n_features: int, t: int) -> int:
    """``P = nc - kc + 1``: delays per group (the zero delay and one per BCH parity bit).

    Example:
        >>> n_delays(100, 5)
        41
    """
    _, nc, kc = bch_parameters(n_features, t)
    return nc - kc + 1


def spex_sample_count(n_features: int, b: int, t: int, n_groups: int = DEFAULT_N_GROUPS) -> int:
    """Queries of a SPEX design: ``N(n, b, t, C) = C * P(n, t) * 2^b``.

    This is an upper bound on distinct value-function evaluations: the ``C`` undelayed zero
    masks ``d_p`` repeat across groups, and small ``n`` repeats more.

    Example:
        >>> spex_sample_count(1000, 8, 5)
        43008
    """
    _check_int("b", b, 0)
    _check_int("n_groups", n_groups, 1)
    return n_groups * n_delays(n_features, t) * (1 << b)


def min_spex_samples(n_features: int, t: int, n_groups: int = DEFAULT_N_GROUPS) -> int:
    """The smallest SPEX budget: ``N(n, MIN_B, t, C)``.

    Example:
        >>> min_spex_samples(100, 5)
        984
    """
    return spex_sample_count(n_features, MIN_B, t, n_groups)


def degree_for_budget(
    n_features: int, n_samples: int, t: int, n_groups: int = DEFAULT_N_GROUPS
) -> int:
    """The largest degree parameter in ``[2, t]`` whose smallest design fits ``n_samples``.

    A tight budget buys a lower ``t`` (fewer delays per bin) before it is refused: ``2`` when
    not even ``t = 2`` fits, and :func:`plan_for_budget` then reports that minimum.

    Example:
        >>> degree_for_budget(100, 10_000, 5), degree_for_budget(100, 700, 5)
        (5, 3)
    """
    _check_int("t", t, 1)
    while t > 2 and min_spex_samples(n_features, t, n_groups) > n_samples:
        t -= 1
    return t


def plan_for_budget(
    n_features: int, n_samples: int, t: int, n_groups: int = DEFAULT_N_GROUPS, max_b: int = MAX_B
) -> int:
    """The largest ``b`` in ``[MIN_B, max_b]`` whose design has at most ``n_samples`` queries.

    Raises:
        BudgetTooSmallError: if even ``b = MIN_B`` needs more than ``n_samples`` queries.

    Example:
        >>> plan_for_budget(100, 10_000, 5)
        6
    """
    _check_int("n_samples", n_samples, 1)
    per_bin = n_groups * n_delays(n_features, t)
    minimum = per_bin << MIN_B
    if n_samples < minimum:
        low = n_groups * n_delays(n_features, 2) << MIN_B
        hint = f" or lower `degree_parameter` (t=2 needs {low})" if t > 2 else ""
        raise BudgetTooSmallError(
            f"method='spex' needs n_samples >= {minimum} for n_features={n_features} and "
            f"degree_parameter t={t} ({n_groups} groups x {per_bin // n_groups} delays x 2^{MIN_B}"
            f" bins); got {n_samples}. Raise `n_samples` to at least {minimum}{hint}, or use "
            "method='proxyspex'.",
            minimum,
        )
    b = (n_samples // per_bin).bit_length() - 1
    return min(b, max_b)


def default_n_samples(n_features: int, t: int) -> int:
    """The budget SPEX spends when ``n_samples`` is not given: about one bin per feature.

    ``P(n, t) * min(max(n, 48), 512)`` queries, i.e. a design of ``min(max(n, 48), 512)`` bins
    (three groups and smaller fill-in groups) with ``P`` delays each; SPEX with three groups
    resolves about as many terms as it has bins, so this expects up to ~``n`` interactions.

    Example:
        >>> default_n_samples(20, 5), default_n_samples(100, 5), default_n_samples(1000, 5)
        (1344, 4100, 28672)
    """
    low, high = DEFAULT_BINS
    return n_delays(n_features, t) * min(max(n_features, low), high)


def fill_budget(
    n_features: int,
    n_samples: int,
    t: int,
    n_groups: int = DEFAULT_N_GROUPS,
    max_groups: int | None = None,
    max_b: int = MAX_B,
    cost: Callable[[tuple[int, ...]], int] | None = None,
) -> tuple[int, ...]:
    """Bins per group (``b_c``, largest first) that spend as much of ``n_samples`` as fits.

    Starts from ``n_groups`` equal groups of the largest ``b`` whose masks fit, then repeats,
    taking the first step that fits: enlarge the smallest group (``b_c + 1``); *rebalance*:
    enlarge the largest group below the top one and shrink the smallest by 1 or 2 (to at least
    ``max(MIN_FILL_B, b_max - 3)``; more bins in total); add a group (up to ``max_groups``) of
    the largest ``b <= min b_c`` (at least ``MIN_FILL_B``). It stops when none fits.

    Two large groups and a small one resolve more terms per call than even groups of the
    same bins: peeling starts in the large groups, and the small one separates the terms that
    collide in both (planted n = 1000, 50 terms of order <= 3, t = 3, seeds 0-3: groups
    (4, 4, 2), 1,156 calls, exact on 4 of 4; (4, 3, 3, 2), 1,122 calls, on none; 100 terms of
    order <= 4, t = 4: (5, 5, 3), 3,150 calls, 4 of 4; (5, 4, 4, 3), 3,105 calls, none).

    Args:
        n_features: ``n``.
        n_samples: the budget (distinct masks).
        t: degree parameter (sets the delays ``P``).
        n_groups: groups to start with (and the fewest used).
        max_groups: most groups (default :data:`MAX_GROUPS`; ``n_groups`` to fix the count).
        max_b: largest ``b_c``.
        cost: distinct masks of a design given its ``b_c`` (default: the upper bound
            ``P (sum 2^{b_c} - C + 1)``, the ``C`` groups share the ``P`` masks ``d_p``).

    Raises:
        BudgetTooSmallError: if ``n_groups`` groups of ``2^MIN_B`` bins do not fit.

    Example:
        >>> fill_budget(1000, 2500, 3)   # 34 delays: 76 bins, at most 2,482 distinct masks
        (5, 5, 3, 2)
    """
    p = n_delays(n_features, t)
    if max_groups is None:
        max_groups = max(MAX_GROUPS, n_groups)
    if cost is None:
        def cost(group_b: tuple[int, ...]) -> int:
            return p * (sum(1 << b for b in group_b) - len(group_b) + 1)

    b = plan_for_budget(n_features, n_samples, t, n_groups, max_b)
    design = [b] * n_groups
    while design[0] < max_b and cost(tuple([design[0] + 1] * n_groups)) <= n_samples:
        design = [design[0] + 1] * n_groups  # distinct masks can leave room for a larger b
    while True:
        small = len(design) - 1 - design[::-1].index(min(design))  # last of the smallest
        if design[small] < max_b:
            bigger = list(design)
            bigger[small] += 1
            bigger.sort(reverse=True)
            if cost(tuple(bigger)) <= n_samples:
                design = bigger
                continue
        rebalanced = [d for d in _rebalanced(design) if cost(d) <= n_samples]
        if rebalanced:
            design = list(rebalanced[0])
            continue
        if len(design) >= max_groups:
            break
        for nb in range(min(design), MIN_FILL_B - 1, -1):
            if cost((*design, nb)) <= n_samples:
                design.append(nb)
                break
        else:
            break
    return tuple(design)


def _rebalanced(design: list[int]) -> list[tuple[int, ...]]:
    """``design`` (largest first) with the largest group below the top one enlarged and the
    smallest shrunk by 1, then by 2 (each has more bins than ``design``)."""
    small = len(design) - 1 - design[::-1].index(min(design))  # last of the smallest
    below = [i for i, b in enumerate(design) if b < design[0] and i != small]
    out: list[tuple[int, ...]] = []
    for drop in (1, 2):
        if not below or design[small] - drop < max(MIN_FILL_B, design[0] - 3):
            break
        moved = list(design)
        moved[below[0]] += 1
        moved[small] -= drop
        out.append(tuple(sorted(moved, reverse=True)))
    return out


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{name}` must be an int >= {low}; got {value!r}.")


@dataclass(frozen=True, eq=False)
class SPEXPlan:
    """A SPEX design: ``C`` subsampling matrices and the BCH delay matrix.

    Build it with :meth:`create` (or :meth:`for_budget`); the masks come from :meth:`masks`.

    Attributes:
        n_features: number of features ``n``.
        b: log2 of the number of bins of the largest group.
        t: BCH error-correction capability (the degree parameter).
        code: the :class:`~torchspex.sampling.bch.BCHCode` behind the delays.
        subsampling: ``bool [C, n, b]``, the matrices ``M_c`` (group ``c`` uses its first
            ``group_b[c]`` columns; the others are zero).
        group_b: ``b_c`` of each group (all ``b`` unless the plan was filled to a budget).

    Example:
        >>> plan = SPEXPlan.create(10, b=3, t=2, generator=torch.Generator().manual_seed(0))
        >>> plan.n_groups, plan.n_delays, plan.n_queries
        (3, 11, 264)
        >>> plan.masks(0).shape
        torch.Size([88, 10])
    """

    n_features: int
    b: int
    t: int
    code: BCHCode
    subsampling: Tensor
    group_b: tuple[int, ...] = ()
    _row_codes: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.group_b:
            object.__setattr__(self, "group_b", (self.b,) * self.subsampling.shape[0])
        weights = 1 << torch.arange(self.b, dtype=torch.long)
        codes = (self.subsampling.long() * weights).sum(dim=2)  # [C, n]
        object.__setattr__(self, "_row_codes", codes)

    @classmethod
    def create(
        cls,
        n_features: int,
        b: int,
        t: int,
        n_groups: int = DEFAULT_N_GROUPS,
        generator: torch.Generator | None = None,
    ) -> SPEXPlan:
        """Draws the subsampling matrices (i.i.d. uniform bits) and builds the BCH code.

        The bits are drawn ``MAX_B`` columns wide and cut to ``b``, so plans of different ``b``
        from equal generators are nested (the bins of smaller ``b`` are coarsenings).
        """
        bits = cls._draw(n_features, n_groups, generator)
        return cls._from_bits(bits, b, t)

    @staticmethod
    def _draw(n_features: int, n_groups: int, generator: torch.Generator | None) -> Tensor:
        _check_int("n_features", n_features, 1)
        _check_int("n_groups", n_groups, 1)
        return torch.randint(0, 2, (n_groups, n_features, MAX_B), generator=generator).bool()

    @classmethod
    def _from_bits(cls, bits: Tensor, b: int | tuple[int, ...], t: int) -> SPEXPlan:
        group_b = (b,) * bits.shape[0] if isinstance(b, int) else tuple(b)
        for value in group_b:
            _check_int("b", value, 1)
            if value > MAX_B:
                raise ValueError(f"`b` must be <= {MAX_B}; got {value}.")
        n_features, top = bits.shape[1], max(group_b)
        sub = bits[: len(group_b), :, :top].clone()
        for c, value in enumerate(group_b):
            sub[c, :, value:] = False
        return cls(n_features, top, t, bch_code(n_features, t), sub.contiguous(), group_b)

    @classmethod
    def from_group_b(
        cls,
        n_features: int,
        group_b: tuple[int, ...],
        t: int,
        generator: torch.Generator | None = None,
    ) -> SPEXPlan:
        """A plan whose group ``c`` has ``2^{group_b[c]}`` bins (the bits are drawn as in
        :meth:`create`, so group ``c`` of equal generators is a coarsening across plans)."""
        bits = cls._draw(n_features, len(group_b), generator)
        return cls._from_bits(bits, tuple(group_b), t)

    @classmethod
    def for_budget(
        cls,
        n_features: int,
        n_samples: int,
        t: int,
        n_groups: int = DEFAULT_N_GROUPS,
        generator: torch.Generator | None = None,
        max_b: int = MAX_B,
        max_groups: int | None = None,
    ) -> SPEXPlan:
        """The design with the most bins whose *distinct* masks fit in ``n_samples``.

        The bins per group come from :func:`fill_budget` (``n_groups`` equal groups, then the
        smallest enlarged, bins moved from the smallest to the second largest, or a smaller
        group added while the masks fit; ``max_groups = n_groups`` keeps the group count).
        Distinct masks are counted exactly when the design is small enough to enumerate (small
        ``n`` repeats many masks, and a repeated mask is evaluated once), else bounded by
        ``P (sum 2^{b_c} - C + 1)``.

        Raises:
            BudgetTooSmallError: if the smallest design needs more than ``n_samples`` queries.
        """
        if max_groups is None:
            max_groups = max(MAX_GROUPS, n_groups)
        bits = cls._draw(n_features, max_groups, generator)
        p = n_delays(n_features, t)

        def cost(group_b: tuple[int, ...]) -> int:
            bound = p * (sum(1 << b for b in group_b) - len(group_b) + 1)
            if bound + p * (len(group_b) - 1) > _DISTINCT_COUNT_BITS // n_features:
                return bound
            return cls._from_bits(bits, group_b, t).count_distinct()

        group_b = fill_budget(n_features, n_samples, t, n_groups, max_groups, max_b, cost)
        return cls._from_bits(bits, group_b, t)

    # ------------------------------------------------------------------ sizes
    @property
    def n_groups(self) -> int:
        """``C``."""
        return self.subsampling.shape[0]

    @property
    def n_delays(self) -> int:
        """``P``: the zero delay plus one per parity bit."""
        return self.code.n_parity + 1

    @property
    def n_bins(self) -> int:
        """``2^b`` bins of the largest group (of every group unless filled to a budget)."""
        return 1 << self.b

    @property
    def group_bins(self) -> tuple[int, ...]:
        """``2^{b_c}`` bins of each group."""
        return tuple(1 << b for b in self.group_b)

    @property
    def total_bins(self) -> int:
        """``sum_c 2^{b_c}``: bins over all groups."""
        return sum(self.group_bins)

    @property
    def bin_offsets(self) -> Tensor:
        """``int64 [C]``: position of each group's first bin when all bins are concatenated."""
        sizes = torch.tensor((0, *self.group_bins[:-1]), dtype=torch.long)
        return torch.cumsum(sizes, 0)

    @property
    def n_queries(self) -> int:
        """``P * sum_c 2^{b_c}`` masks queried (with repeats)."""
        return self.n_delays * self.total_bins

    # ------------------------------------------------------------------ masks
    @property
    def delays(self) -> Tensor:
        """``D``: ``bool [P, n]``, the zero row then the BCH parity rows."""
        h = torch.from_numpy(self.code.parity_matrix)
        return torch.cat([torch.zeros(1, self.n_features, dtype=torch.bool), h])

    def _span(self, group: int) -> Tensor:
        """``M_c l`` for every ``l``: ``bool [2^b, n]`` (bit ``i`` of row ``l`` is ``l_i``)."""
        m = self.subsampling[group]
        out = torch.zeros(self.group_bins[group], self.n_features, dtype=torch.bool)
        for i in range(self.group_b[group]):
            half = 1 << i
            out[half : 2 * half] = out[:half] ^ m[:, i]
        return out

    def masks(self, group: int, delays: slice | None = None) -> Tensor:
        """Masks of one group, ``bool [P' * 2^{b_c}, n]``, delay-major (row ``p 2^{b_c} + l``).

        Args:
            group: group index ``c``.
            delays: a slice of the delays (default all ``P``).
        """
        span = self._span(group)
        d = self.delays if delays is None else self.delays[delays]
        return (d[:, None, :] ^ span[None]).reshape(-1, self.n_features)

    def all_masks(self) -> Tensor:
        """Every queried mask, ``bool [n_queries, n]`` (group-major; for tests and counting)."""
        return torch.cat([self.masks(c) for c in range(self.n_groups)])

    def count_distinct(self) -> int:
        """Number of distinct masks in the design."""
        return int(np.unique(mask_keys(self.all_masks())).size)

    # ------------------------------------------------------------------ frequencies
    @property
    def bin_codes(self) -> Tensor:
        """``int64 [C, n]``: bin of each single feature (``M_c`` rows as integers, bit ``i`` =
        column ``i``); the bin of a set is the XOR of its features' codes."""
        return self._row_codes

    def bins(self, features: Tensor) -> Tensor:
        """Bins ``j = M_c^T k`` of frequencies given as set rows ``int64 [K, d]`` -> ``[C, K]``."""
        features = torch.as_tensor(features, dtype=torch.long)
        codes = torch.cat([self._row_codes, torch.zeros(self.n_groups, 1, dtype=torch.long)], 1)
        cols = torch.where(features < 0, self.n_features, features)  # [K, d]
        gathered = codes[:, cols]  # [C, K, d]
        out = torch.zeros(gathered.shape[:2], dtype=torch.long)
        for i in range(gathered.shape[2]):
            out ^= gathered[:, :, i]
        return out

    def signatures(self, features: Tensor) -> Tensor:
        """``(-1)^{<d_p, k>}`` of set rows ``int64 [K, d]`` -> ``float64 [K, P]``."""
        rows = np.asarray(torch.as_tensor(features, dtype=torch.long))
        bits = torch.from_numpy(self.code.parity_of_features(rows))
        ones = torch.ones(bits.shape[0], 1, dtype=torch.float64)
        return torch.cat([ones, 1.0 - 2.0 * bits.double()], dim=1)
