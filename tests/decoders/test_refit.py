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
