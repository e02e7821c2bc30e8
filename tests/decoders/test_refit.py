import pytest
import torch

from torchspex.decoders.refit import refit, walsh_design
from torchspex.fourier import SparseSpectrum


def planted(n: int = 60, seed: int = 0) -> tuple[SparseSpectrum, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    spec = SparseSpectrum.from_sets(
        [(), (0,), (3, 7), (10,), (20, 30, 40)], [1.0, 2.0, -0.5, 0.3, 0.1], n
    )
    return spec, g


@pytest.mark.parametrize("method", ["ols", "ridge"])
def test_noiseless_refit_is_exact(method: str) -> None:
    spec, g = planted()
    masks = torch.rand(800, spec.n_features, generator=g) < 0.5
    coef = refit(masks, spec.evaluate(masks), spec.indices, spec.n_features, method=method)
    assert torch.allclose(coef, spec.coefficients, atol=1e-8)


def test_ridge_picks_penalty_per_output() -> None:
    spec, g = planted(seed=1)
    masks = torch.rand(2000, spec.n_features, generator=g) < 0.5
    y = spec.evaluate(masks)
    noisy = y + 0.5 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    both = refit(masks, torch.stack([y, noisy], 1), spec.indices, spec.n_features)
    alone = refit(masks, noisy, spec.indices, spec.n_features)
    assert torch.allclose(both[:, 1], alone, atol=1e-12)
    assert torch.allclose(both[:, 0], spec.coefficients, atol=1e-7)
    assert (both[:, 1] - spec.coefficients).abs().max() < 0.1


def test_walsh_design_signs() -> None:
    masks = torch.tensor([[True, True, False]])
    idx = torch.tensor([[-1, -1], [0, 1], [0, 2], [2, -1]])
    assert walsh_design(masks, idx, 3).tolist() == [[1.0, 1.0, -1.0, 1.0]]
    with pytest.raises(ValueError, match="method"):
        refit(masks, torch.ones(1), idx, 3, method="lasso")


@pytest.mark.parametrize(
    ("m", "n", "s", "d"), [(1, 3, 4, 2), (9, 70, 5, 3), (300, 17, 40, 4), (1000, 200, 64, 5),
                           (7, 5, 3, 0), (33, 12, 200, 1)]
)
def test_walsh_design_packed_parities_match_the_gather(m: int, n: int, s: int, d: int) -> None:
    """The CPU path (packed columns, XOR per set) equals the device path (a gather and a sum),
    padding, repeated features and float32 included."""
    from torchspex.decoders.refit import _walsh_design_torch

    g = torch.Generator().manual_seed(m + n + s + d)
    masks = torch.rand(m, n, generator=g) < 0.5
    idx = torch.randint(-1, n, (s, d), generator=g)
    if d:
        idx[0] = -1  # the empty set
    for dtype in (torch.float64, torch.float32):
        fast = walsh_design(masks, idx, n, dtype=dtype)
        assert fast.dtype == dtype and fast.shape == (m, s) and fast.is_contiguous()
        assert torch.equal(fast, _walsh_design_torch(masks, idx, n, dtype))
    assert walsh_design(masks[:0], idx, n).shape == (0, s)
    assert walsh_design(masks, idx[:0], n).shape == (m, 0)
