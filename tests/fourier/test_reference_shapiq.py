"""Every index equals shapiq's ExactComputer (test-only oracle), empty-set conventions included."""

import numpy as np
import pytest
import torch

from torchspex.fourier import SparseSpectrum, dense_to_spectrum, fourier_to_index, fwht

shapiq = pytest.importorskip("shapiq")
from shapiq.game_theory.exact import ExactComputer  # noqa: E402

# shapiq solves FSII as a penalized least-squares problem; its own error is ~1e-9.
TOL = {"FSII": 1e-7}


def game(n: int, seed: int) -> SparseSpectrum:
    f = np.random.default_rng(seed).normal(size=1 << n)
    coef = fwht(torch.from_numpy(f)) / (1 << n)
    return dense_to_spectrum(coef, n, "Fourier", keep=torch.ones(1 << n, dtype=torch.bool))


@pytest.mark.parametrize("n", [3, 5, 7])
@pytest.mark.parametrize(
    ("index", "order"),
    [(i, o) for i in ["SII", "k-SII", "BII", "STII", "FSII", "FBII"] for o in (1, 2, 3)]
    + [("SV", 1), ("BV", 1), ("Moebius", None)],
)
def test_equals_shapiq_exact_computer(n: int, index: str, order: int | None) -> None:
    spec = game(n, seed=n)
    computer = ExactComputer(
        n_players=n, game=lambda x: spec.evaluate(torch.as_tensor(x).bool()).numpy()
    )
    theirs = computer(index=index, order=n if order is None else order)
    mine = fourier_to_index(spec, index, order).to_dict()
    tol = TOL.get(index, 1e-10)
    for key, pos in theirs.interaction_lookup.items():
        assert mine.get(key, 0.0) == pytest.approx(theirs.values[pos], abs=tol), key
    assert set(mine) <= set(theirs.interaction_lookup)
    assert () in theirs.interaction_lookup or index == "Moebius"
