"""Paired Shapley-kernel coalitions: corners first, complements paired, distinct, weighted."""

from __future__ import annotations

import math

import pytest
import torch

from torchspex.sampling import coalitions
from torchspex.sampling.coalitions import paired_coalitions, shapley_kernel_mass


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sizes", ["kernel", "mix", "sqrt", "leverage"])
@pytest.mark.parametrize(("n", "budget"), [(6, 20), (10, 12), (10, 256), (13, 300), (64, 512),
                                           (200, 1000), (1100, 600), (2000, 300)])  # fmt: skip
def test_corners_pairs_distinct_and_within_budget(n, budget, sizes):
    masks, weights = paired_coalitions(n, budget, _g(), sizes)
    assert masks.shape[0] <= budget and masks.shape[0] >= budget - 1
    assert not masks[0].any() and masks[1].all()
    assert math.isinf(weights[0]) and math.isinf(weights[1])
    assert bool((masks[2::2] == ~masks[3::2]).all())
    assert torch.unique(masks, dim=0).shape[0] == masks.shape[0]
    assert bool((weights[2:] > 0).all()) and bool(torch.isfinite(weights[2:]).all())
    # pair members carry the same weight (the Shapley kernel is symmetric in s <-> n - s)
    assert torch.equal(weights[2::2], weights[3::2])


def test_weights_sum_to_the_kernel_mass():
    n = 10
    total = float(shapley_kernel_mass(n)[1:n].sum())
    _, weights = paired_coalitions(n, 256, _g())
    assert abs(float(weights[2:].sum()) - total) < 1e-9 * total


@pytest.mark.parametrize("sizes", ["kernel", "mix", "sqrt", "leverage"])
def test_size_rules_spend_the_budget_as_their_shares_say(sizes):
    """Sampled sizes get counts in proportion to the rule's share (within one, by systematic
    sampling); every rule's weights still add up to the kernel's mass in expectation."""
    n, budget = 200, 2002  # no size is enumerated at this budget
    masks, weights = paired_coalitions(n, budget, _g(1), sizes)
    mass = shapley_kernel_mass(n)[1:n]
    kernel, uniform = mass / mass.sum(), torch.full_like(mass, 1.0 / (n - 1))
    share = {"kernel": kernel, "leverage": uniform, "sqrt": kernel.sqrt(),
             "mix": 0.5 * kernel + 0.5 * uniform}[sizes]
    share = share / share.sum()
    counts = torch.bincount(masks[2:].sum(dim=1), minlength=n + 1)[1:n].double()
    # each pair class {s, n - s} gets floor or ceiling of its expected number of pairs
    pairs = (budget - 2) // 2
    for s in range(1, n // 2):
        want = pairs * float(share[s - 1] + share[n - s - 1])
        assert abs(float(counts[s - 1]) - want) <= 1.0 + 1e-9, s
    total = float(mass.sum())
    assert abs(float(weights[2:].sum()) - total) < 0.05 * total


def test_border_trick_enumerates_the_smallest_sizes_first():
    n = 10
    masks, weights = paired_coalitions(n, 512, _g(), "kernel")
    sizes = masks.sum(dim=1)
    # at 512 calls the expected counts of sizes 1, 9 (10 each) and 2, 8 (45 each) reach the
    # number of their coalitions: they are enumerated
    for s, count in ((1, 10), (9, 10), (2, 45), (8, 45)):
        assert int((sizes == s).sum()) == count
    assert masks.shape[0] == 512
    # enumerated coalitions have the exact per-coalition kernel weight
    per = (n - 1) / (math.comb(n, 1) * 1 * (n - 1))
    assert torch.allclose(weights[sizes == 1], torch.tensor(per, dtype=torch.float64))


def test_every_mask_when_the_budget_covers_the_cube():
    masks, _ = paired_coalitions(5, 100, _g())
    assert masks.shape[0] == 32 and torch.unique(masks, dim=0).shape[0] == 32


def test_same_generator_same_design_and_bad_arguments():
    a, wa = paired_coalitions(30, 200, _g(3))
    b, wb = paired_coalitions(30, 200, _g(3))
    assert torch.equal(a, b) and torch.equal(wa, wb)
    with pytest.raises(ValueError, match="`n_samples` must be an int >= 2"):
        paired_coalitions(5, 1)
    with pytest.raises(ValueError, match="`sizes` must be one of"):
        paired_coalitions(5, 10, sizes="uniform")
    assert paired_coalitions(1, 10)[0].shape == (2, 1)


@pytest.mark.parametrize("sizes", ["kernel", "mix", "leverage"])
@pytest.mark.parametrize(("n", "budget"), [(12, 200), (40, 300), (256, 512), (327, 1000)])
def test_one_draw_for_all_classes_gives_the_class_by_class_design(n, budget, sizes, monkeypatch):
    """The first draws of every size class come from one call of the generator; the design is
    bitwise the one drawn class by class (the path taken where a class may fall short)."""
    at_once = [paired_coalitions(n, budget, _g(seed), sizes) for seed in range(3)]
    monkeypatch.setattr(coalitions, "_first_draws", lambda *args: None)
    for seed, (masks, weights) in enumerate(at_once):
        one_by_one = paired_coalitions(n, budget, _g(seed), sizes)
        assert torch.equal(masks, one_by_one[0]) and torch.equal(weights, one_by_one[1])
