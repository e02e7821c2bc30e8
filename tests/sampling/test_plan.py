"""The SPEX query plan: sample counts, budgets, masks and the aliasing identity."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import planted_spectrum
from torchspex.decoders.base import BudgetTooSmallError
from torchspex.fourier import fwht
from torchspex.sampling import (
    SPEXPlan,
    default_n_samples,
    fill_budget,
    min_spex_samples,
    n_delays,
    plan_for_budget,
    spex_sample_count,
)
from torchspex.sampling.plan import MAX_GROUPS, MIN_B


@pytest.mark.parametrize(("n", "b", "t", "expected"), [
    (100, 8, 5, 31_488), (1000, 8, 5, 43_008), (8, 3, 5, 504), (12, 6, 3, 3 * 16 * 64),
])
def test_sample_count_closed_form(n, b, t, expected):
    assert spex_sample_count(n, b, t) == expected


def test_plan_sizes_match_closed_form(generator):
    plan = SPEXPlan.create(30, 4, 3, n_groups=2, generator=generator)
    assert plan.n_queries == spex_sample_count(30, 4, 3, n_groups=2)
    assert plan.all_masks().shape == (plan.n_queries, 30)
    assert plan.n_delays == n_delays(30, 3)
    assert plan.subsampling.shape == (2, 30, 4)


def test_masks_are_subsampled_cosets(generator):
    """Row ``p * 2^b + l`` of group ``c`` is ``M_c l + d_p (mod 2)``."""
    plan = SPEXPlan.create(17, 3, 2, generator=generator)
    d = plan.delays.long()
    for c in range(plan.n_groups):
        m = plan.subsampling[c].long()
        masks = plan.masks(c).reshape(plan.n_delays, plan.n_bins, 17).long()
        for p in (0, 1, plan.n_delays - 1):
            for l_int in range(plan.n_bins):
                l_vec = torch.tensor([(l_int >> i) & 1 for i in range(plan.b)])
                expected = (m @ l_vec + d[p]) % 2
                assert torch.equal(masks[p, l_int], expected)
    part = plan.masks(1, slice(2, 5))
    assert torch.equal(part, plan.masks(1)[2 * plan.n_bins : 5 * plan.n_bins])


def test_aliasing_identity(generator):
    """WHT of a group's delayed samples = sum over the bin of F(k) (-1)^<d_p, k>."""
    n = 24
    spectrum = planted_spectrum(n, 40, 4, generator)
    plan = SPEXPlan.create(n, 4, 4, generator=generator)
    bins = plan.bins(spectrum.indices)  # [C, s]
    sig = plan.signatures(spectrum.indices)  # [s, P]
    for c in range(plan.n_groups):
        values = spectrum.evaluate(plan.masks(c)).reshape(plan.n_delays, plan.n_bins)
        u = fwht(values, dim=1) / plan.n_bins
        expected = torch.zeros(plan.n_delays, plan.n_bins, dtype=torch.float64)
        expected.index_add_(1, bins[c], (sig * spectrum.coefficients[:, None]).T)
        assert float((u - expected).abs().max()) < 1e-12


def test_bins_and_signatures_against_dense_math(generator):
    plan = SPEXPlan.create(12, 5, 2, generator=generator)
    feats = torch.tensor([[-1, -1], [3, -1], [0, 11], [4, 7]])
    dense = torch.zeros(4, 12, dtype=torch.long)
    for i, row in enumerate(feats.tolist()):
        for f in row:
            if f >= 0:
                dense[i, f] = 1
    weights = 1 << torch.arange(plan.b)
    for c in range(plan.n_groups):
        j = ((dense @ plan.subsampling[c].long()) % 2 * weights).sum(1)
        assert torch.equal(plan.bins(feats)[c], j)
    parity = (dense @ plan.delays.long().T) % 2
    assert torch.equal(plan.signatures(feats), 1.0 - 2.0 * parity.double())


def test_budget_to_b():
    per_bin = 3 * n_delays(100, 5)
    assert plan_for_budget(100, per_bin * 2**6, 5) == 6
    assert plan_for_budget(100, per_bin * 2**7 - 1, 5) == 6
    assert plan_for_budget(100, 10**12, 5) == 20  # capped
    assert plan_for_budget(100, 10**6, 5, max_b=12) == 12
    assert min_spex_samples(100, 5) == per_bin * 2**MIN_B == 984


def test_budget_too_small_names_the_minimum():
    with pytest.raises(BudgetTooSmallError, match="at least 984") as err:
        plan_for_budget(100, 983, 5)
    assert err.value.minimum == 984
    assert "t=2 needs" in str(err.value)


def test_for_budget_uses_distinct_masks(generator):
    """Small n repeats masks: the distinct-mask count lets a larger b fit, never over budget."""
    for n, budget in [(12, 3000), (14, 5000), (16, 3000), (40, 9000)]:
        plan = SPEXPlan.for_budget(n, budget, 3, generator=torch.Generator().manual_seed(n))
        assert plan.count_distinct() <= budget
        assert plan.b >= plan_for_budget(n, budget, 3)
        if plan.b < 20:
            bigger = SPEXPlan.create(n, plan.b + 1, 3, generator=torch.Generator().manual_seed(n))
            assert bigger.count_distinct() > budget
    small = SPEXPlan.for_budget(10, 1000, 2, generator=generator)
    assert small.b > plan_for_budget(10, 1000, 2)
    assert small.count_distinct() <= 1000


def test_same_generator_same_plan_and_nested_b():
    a = SPEXPlan.create(50, 5, 3, generator=torch.Generator().manual_seed(7))
    b = SPEXPlan.create(50, 5, 3, generator=torch.Generator().manual_seed(7))
    c = SPEXPlan.create(50, 7, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.subsampling, b.subsampling)
    assert torch.equal(c.subsampling[:, :, :5], a.subsampling)
    d = SPEXPlan.create(50, 5, 3, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a.subsampling, d.subsampling)


def test_argument_errors():
    with pytest.raises(ValueError, match="`b` must be <= 20"):
        SPEXPlan.create(10, 21, 2)
    with pytest.raises(ValueError, match="`n_groups` must be an int >= 1"):
        SPEXPlan.create(10, 3, 2, n_groups=0)
    with pytest.raises(ValueError, match="`b` must be an int >= 0"):
        spex_sample_count(10, -1, 2)
    with pytest.raises(ValueError, match="`n_samples` must be an int >= 1"):
        plan_for_budget(10, 0, 2)


@pytest.mark.parametrize(("n", "budget", "t"), [
    (100, 1000, 3), (100, 1300, 5), (1000, 2500, 3), (1000, 1400, 5), (256, 9000, 3),
    (64, 3500, 3), (300, 50_000, 4),
])
def test_fill_budget_spends_and_is_maximal(n, budget, t):
    p = n_delays(n, t)

    def cost(group_b):
        return p * (sum(1 << b for b in group_b) - len(group_b) + 1)

    design = fill_budget(n, budget, t)
    assert len(design) >= 3 and list(design) == sorted(design, reverse=True)
    assert cost(design) <= budget
    # maximal: no group can grow and no group of >= MIN_B bins can be added
    for i in range(len(design)):
        assert cost(tuple(b + (j == i) for j, b in enumerate(design))) > budget
    assert len(design) == MAX_GROUPS or cost((*design, MIN_B)) > budget
    # what is left is less than one more group of the smallest size
    assert budget - cost(design) < p * (1 << MIN_B) or len(design) == MAX_GROUPS


def test_fill_budget_fixed_group_count_and_refusal():
    assert len(fill_budget(1000, 2500, 3, n_groups=3, max_groups=3)) == 3
    with pytest.raises(BudgetTooSmallError) as err:
        fill_budget(100, 500, 3)
    assert err.value.minimum == min_spex_samples(100, 3)


def test_unequal_groups_masks_and_aliasing(generator):
    """Groups of different sizes: masks ``M_c l + d_p`` and the aliasing identity per group."""
    n = 24
    spectrum = planted_spectrum(n, 30, 3, generator)
    plan = SPEXPlan.from_group_b(n, (5, 4, 4, 3), 3, generator=generator)
    assert plan.group_bins == (32, 16, 16, 8) and plan.b == 5
    assert plan.n_queries == plan.n_delays * 72 == plan.all_masks().shape[0]
    assert plan.bin_offsets.tolist() == [0, 32, 48, 64]
    bins = plan.bins(spectrum.indices)  # [C, s]
    sig = plan.signatures(spectrum.indices)
    for c, size in enumerate(plan.group_bins):
        assert int(bins[c].max()) < size
        values = spectrum.evaluate(plan.masks(c)).reshape(plan.n_delays, size)
        u = fwht(values, dim=1) / size
        expected = torch.zeros(plan.n_delays, size, dtype=torch.float64)
        expected.index_add_(1, bins[c], (sig * spectrum.coefficients[:, None]).T)
        assert float((u - expected).abs().max()) < 1e-12


@pytest.mark.parametrize(("n", "budget"), [(16, 3000), (40, 2000), (100, 2600), (1000, 2500)])
def test_for_budget_fills_distinct_masks(n, budget):
    plan = SPEXPlan.for_budget(n, budget, 3, generator=torch.Generator().manual_seed(n))
    distinct = plan.count_distinct()
    assert distinct <= budget
    # one more bin step would not fit: the leftover is below the smallest group's cost
    assert budget - distinct < plan.n_delays * (1 << MIN_B) or plan.n_groups == MAX_GROUPS


def test_default_n_samples_grows_with_n():
    sizes = [default_n_samples(n, 5) for n in (20, 50, 100, 300, 1000)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert default_n_samples(100, 5) == n_delays(100, 5) * 100
