"""Property-based tests (hypothesis) on conversions, set rows and mask evaluation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchspex.decoders import Evaluator, all_masks
from torchspex.fourier import (
    SparseSpectrum,
    fourier_to_index,
    fourier_to_moebius,
    moebius_to_fourier,
    spectrum_to_dense,
)
from torchspex.fourier._sets import indices_to_support, normalize_indices, support_to_indices

FAST = settings(max_examples=25, deadline=None)


@st.composite
def spectra(draw, max_n: int = 8, max_terms: int = 12) -> SparseSpectrum:
    n = draw(st.integers(1, max_n))
    sets = draw(
        st.lists(st.frozensets(st.integers(0, n - 1), max_size=n), min_size=1, max_size=max_terms)
    )
    coef = draw(
        st.lists(
            st.floats(-4, 4, allow_nan=False, allow_infinity=False, width=32),
            min_size=len(sets),
            max_size=len(sets),
        )
    )
    return SparseSpectrum.from_sets([tuple(sorted(s)) for s in sets], coef, n)


@FAST
@given(spectra())
def test_fourier_moebius_round_trip(spec: SparseSpectrum) -> None:
    moeb = fourier_to_moebius(spec)
    masks = all_masks(spec.n_features)
    assert torch.allclose(moeb.evaluate(masks), spec.evaluate(masks), atol=1e-9)
    back = moebius_to_fourier(moeb)
    assert torch.allclose(spectrum_to_dense(back), spectrum_to_dense(spec), atol=1e-10)


@FAST
@given(spectra(), st.sampled_from(["SII", "k-SII", "BII", "STII", "FSII", "FBII", "SV", "BV"]),
       st.integers(1, 4))
def test_sparse_and_dense_paths_agree(spec: SparseSpectrum, index: str, order: int) -> None:
    order = min(order, spec.n_features)
    a = fourier_to_index(spec, index, order, dense=False).to_dict()
    b = fourier_to_index(spec, index, order, dense=True).to_dict()
    for key in set(a) | set(b):
        assert a.get(key, 0.0) == pytest.approx(b.get(key, 0.0), abs=1e-9)


@FAST
@given(spectra())
def test_shapley_values_are_efficient(spec: SparseSpectrum) -> None:
    sv = fourier_to_index(spec, "SV").to_dict()
    ones = torch.ones(1, spec.n_features, dtype=torch.bool)
    zeros = torch.zeros(1, spec.n_features, dtype=torch.bool)
    gap = float(spec.evaluate(ones)[0] - spec.evaluate(zeros)[0])
    assert sum(v for k, v in sv.items() if k) == pytest.approx(gap, abs=1e-9)


@FAST
@given(spectra())
def test_fbii_is_the_low_order_projection(spec: SparseSpectrum) -> None:
    """FBII_1 evaluated as a Möbius polynomial is the best degree-1 fit under uniform masks."""
    fb = fourier_to_index(spec, "FBII", 1)
    as_moebius = SparseSpectrum(fb.indices, fb.coefficients, fb.n_features, "Moebius")
    low = SparseSpectrum(spec.indices, spec.coefficients, spec.n_features).prune(max_order=1)
    masks = all_masks(spec.n_features)
    assert torch.allclose(as_moebius.evaluate(masks), low.evaluate(masks), atol=1e-9)


@FAST
@given(st.integers(1, 12), st.data())
def test_support_index_round_trip(n: int, data) -> None:
    rows = data.draw(st.integers(0, 10))
    flat = data.draw(st.lists(st.booleans(), min_size=rows * n, max_size=rows * n))
    support = torch.tensor(flat, dtype=torch.bool).reshape(rows, n)
    idx = support_to_indices(support) if rows else torch.zeros(0, 0, dtype=torch.long)
    assert torch.equal(indices_to_support(idx, n), support)
    shuffled = idx.flip(1)
    assert torch.equal(normalize_indices(shuffled), normalize_indices(idx))


@FAST
@given(st.integers(1, 10), st.data())
def test_evaluator_returns_each_masks_value_in_order(n: int, data) -> None:
    m = data.draw(st.integers(1, 40))
    flat = data.draw(st.lists(st.booleans(), min_size=m * n, max_size=m * n))
    masks = torch.tensor(flat, dtype=torch.bool).reshape(m, n)
    weights = torch.arange(1, n + 1, dtype=torch.float64)
    calls = []

    def f(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x.double() @ weights

    ev = Evaluator(f, n, batch_size=data.draw(st.integers(1, 7)))
    out = ev(masks)
    assert torch.equal(out, masks.double() @ weights)
    distinct = len({tuple(r) for r in masks.tolist()})
    assert ev.n_evaluations == distinct == sum(calls)
    again = ev(masks.flip(0))
    assert torch.equal(again, out.flip(0))
    assert sum(calls) == distinct


def test_no_global_rng_is_touched() -> None:
    import torchspex

    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking the legacy global RNG
    torchspex.explain(lambda m: m.double().sum(1), 5, method="exhaustive", generator=3)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
