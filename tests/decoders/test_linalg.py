"""The padded factorizations equal torch's own, at padded and unpadded sides."""

from __future__ import annotations

import pytest
import torch

from torchspex.decoders import _linalg


def _spd(batch: int, side: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, side + 16, side, dtype=torch.float64, generator=gen)
    return a.mT @ a


@pytest.mark.parametrize("side", [100, 256, 301, 384, 392])
def test_shifted_cholesky_solves_as_torch_does(side: int) -> None:
    mat = _spd(3, side)
    shift = torch.rand(3, side, dtype=torch.float64)
    keep = mat.clone()
    factor, info = _linalg.ShiftedCholesky(mat)(shift)
    assert torch.equal(mat, keep)  # the input is kept
    assert info.tolist() == [0, 0, 0]
    # padded up to a multiple of 8 that is not one of 128 (from PAD_FROM on)
    want = {100: 100, 256: 264, 301: 304, 384: 392, 392: 392}[side]
    assert factor.shape[-1] == want == (_linalg.nice_side(side) if side >= 256 else side)
    ref = torch.linalg.cholesky(mat + torch.diag_embed(shift))
    torch.testing.assert_close(factor[..., :side, :side], ref, rtol=1e-10, atol=1e-10)
    rhs = torch.randn(3, side, 5, dtype=torch.float64)
    for upper in (False, True):
        tri = ref.mT if upper else ref
        want = torch.linalg.solve_triangular(tri, rhs, upper=upper)
        got = _linalg.solve_triangular(factor, rhs, upper=upper)
        assert got.shape == rhs.shape
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_shifted_cholesky_reports_a_failed_factor() -> None:
    mat = _spd(2, 256)
    mat[1] = -mat[1]  # negative definite
    _, info = _linalg.ShiftedCholesky(mat)(torch.zeros(2, 256, dtype=torch.float64))
    assert info[0] == 0 and info[1] > 0


@pytest.mark.parametrize("side", [130, 256])
def test_lu_and_inverse_match_torch(side: int) -> None:
    gen = torch.Generator().manual_seed(1)
    mat = torch.randn(side, side, dtype=torch.float64, generator=gen)
    rhs = torch.randn(side, 3, dtype=torch.float64, generator=gen)
    lu, pivots = _linalg.lu_factor(mat)
    torch.testing.assert_close(_linalg.lu_solve(lu, pivots, rhs), torch.linalg.solve(mat, rhs),
                               rtol=1e-8, atol=1e-10)  # fmt: skip
    spd = _spd(1, side)[0]
    torch.testing.assert_close(_linalg.spd_inverse(spd) @ spd,
                               torch.eye(side, dtype=torch.float64), rtol=0, atol=1e-8)  # fmt: skip
