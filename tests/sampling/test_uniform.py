import numpy as np
import pytest
import torch

from torchspex.decoders.exhaustive import all_masks
from torchspex.sampling.uniform import MAX_PERMUTATION_FEATURES, uniform_masks


def codes(masks: torch.Tensor) -> list[int]:
    weights = 1 << torch.arange(masks.shape[1])
    return (masks.long() * weights).sum(dim=1).tolist()


def n_distinct(masks: torch.Tensor) -> int:
    return int(np.unique(np.packbits(masks.numpy(), axis=1), axis=0).shape[0])


@pytest.mark.parametrize(("n", "m"), [(1, 2), (5, 7), (10, 300), (20, 50), (45, 1000), (130, 200)])
def test_distinct_with_empty_and_full_first(n, m, generator):
    masks = uniform_masks(n, m, generator)
    assert masks.shape == (m, n)
    assert masks.dtype == torch.bool
    assert not masks[0].any()
    assert masks[1].all()
    assert n_distinct(masks) == m


@pytest.mark.parametrize(("n", "m"), [(1, 5), (3, 8), (3, 1000), (8, 256)])
def test_budget_covering_every_mask_returns_all_once(n, m, generator):
    masks = uniform_masks(n, m, generator)
    assert masks.shape == (1 << n, n)
    assert sorted(codes(masks)) == sorted(codes(all_masks(n)))


def test_two_samples_are_the_empty_and_full_masks(generator):
    masks = uniform_masks(30, 2, generator)
    assert masks.tolist() == [[False] * 30, [True] * 30]


@pytest.mark.parametrize("n", [12, 40])
def test_same_generator_same_masks_and_other_seed_differs(n):
    a = uniform_masks(n, 200, torch.Generator().manual_seed(3))
    b = uniform_masks(n, 200, torch.Generator().manual_seed(3))
    c = uniform_masks(n, 200, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_default_generator_is_seeded():
    assert torch.equal(uniform_masks(30, 50), uniform_masks(30, 50))


def test_permutation_path_is_uniform_over_the_other_masks():
    # n = 3: the 6 masks other than empty/full, 2 drawn per seed; each should come up 1/3 of
    # the time (binomial sd ~ 0.012 over 1500 runs).
    counts = torch.zeros(8)
    n_runs = 1500
    for seed in range(n_runs):
        masks = uniform_masks(3, 4, torch.Generator().manual_seed(seed))
        counts[codes(masks[2:])] += 1
    freq = counts[1:7] / n_runs
    assert counts[0] == 0 and counts[7] == 0
    assert torch.allclose(freq, torch.full((6,), 1 / 3), atol=0.05)


def test_rejection_path_marginals_are_fair():
    n = MAX_PERMUTATION_FEATURES + 10
    masks = uniform_masks(n, 6000, torch.Generator().manual_seed(1))[2:].double()
    assert torch.allclose(masks.mean(dim=0), torch.full((n,), 0.5, dtype=torch.float64), atol=0.03)
    pair = (masks[:, 0] * masks[:, 1]).mean()
    assert abs(float(pair) - 0.25) < 0.03


@pytest.mark.parametrize("m", [60, 120, 200, 250])
def test_rejection_with_many_repeats_stays_distinct(m, generator, monkeypatch):
    # Force the rejection path on n = 8 (256 masks): at m = 120 about half the draws repeat;
    # above 2^(n-1) the sampler switches to a permutation.
    monkeypatch.setattr("torchspex.sampling.uniform.MAX_PERMUTATION_FEATURES", 4)
    masks = uniform_masks(8, m, generator)
    assert n_distinct(masks) == masks.shape[0] == m
    assert not masks[0].any() and masks[1].all()


@pytest.mark.parametrize(
    ("n", "m", "exc", "match"),
    [
        (0, 10, ValueError, "`n_features` must be >= 1"),
        (5, 1, ValueError, "`n_samples` must be >= 2"),
        (5.0, 10, TypeError, "`n_features` must be an int"),
        (5, True, TypeError, "`n_samples` must be an int"),
    ],
)
def test_errors(n, m, exc, match):
    with pytest.raises(exc, match=match):
        uniform_masks(n, m)
