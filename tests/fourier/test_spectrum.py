import pytest
import torch

from torchspex import Interactions
from torchspex.decoders import all_masks
from torchspex.fourier import (
    SparseSpectrum,
    dense_to_spectrum,
    fourier_to_moebius,
    fwht,
    moebius_to_fourier,
    spectrum_to_dense,
)


def test_evaluate_matches_definition() -> None:
    g = torch.Generator().manual_seed(0)
    n = 7
    support = torch.rand(20, n, generator=g) < 0.4
    coef = torch.randn(20, 3, generator=g, dtype=torch.float64)
    spec = SparseSpectrum.from_support(support, coef)
    masks = all_masks(n)
    parity = (masks.double() @ support.double().T) % 2
    expected = (1 - 2 * parity) @ coef
    assert torch.allclose(spec.evaluate(masks), expected, atol=1e-12)
    assert torch.allclose(spec.evaluate(masks, chunk_size=5), expected, atol=1e-12)


def test_evaluate_takes_many_pairs_as_one_quadratic_form(monkeypatch) -> None:
    """Every pair of 20 features (more than PAIRS_AS_MATRIX per feature) with other terms
    and a [2, 3] output: the quadratic form gives the definition's values to round-off."""
    from torchspex.fourier import spectrum as spectrum_module

    g = torch.Generator().manual_seed(5)
    n = 20
    pairs = torch.combinations(torch.arange(n), 2)
    support = torch.zeros(pairs.shape[0] + 30, n, dtype=torch.bool)
    support[torch.arange(pairs.shape[0]).unsqueeze(1), pairs] = True
    support[pairs.shape[0]:] = torch.rand(30, n, generator=g) < 0.2
    coef = torch.randn(support.shape[0], 2, 3, generator=g, dtype=torch.float64)
    spec = SparseSpectrum.from_support(support, coef).coalesce()
    assert int((spec.orders == 2).sum()) > spectrum_module.PAIRS_AS_MATRIX * n
    masks = torch.rand(300, n, generator=g) < 0.5
    parity = (masks.double() @ spec.support.double().T) % 2
    expected = torch.einsum("ms,sbo->mbo", 1 - 2 * parity, spec.coefficients)
    got = spec.evaluate(masks)
    assert got.shape == (300, 2, 3)
    assert torch.allclose(got, expected, rtol=0, atol=1e-11)
    monkeypatch.setattr(spectrum_module, "PAIRS_MATRIX_SIZE", n * n * 6)  # masks 20 at a time
    assert torch.allclose(spec.evaluate(masks), expected, rtol=0, atol=1e-11)
    monkeypatch.setattr(spectrum_module, "PAIRS_AS_MATRIX", 10**9)  # term by term
    assert torch.allclose(spec.evaluate(masks), expected, rtol=0, atol=1e-11)


def test_evaluate_equals_fwht_of_dense() -> None:
    g = torch.Generator().manual_seed(1)
    coef = torch.randn(1 << 6, generator=g, dtype=torch.float64)
    spec = dense_to_spectrum(coef, 6, "Fourier")
    assert torch.allclose(spec.evaluate(all_masks(6)), fwht(coef), atol=1e-12)


@pytest.mark.parametrize("dense", [False, True])
def test_round_trip_fourier_moebius_fourier(dense: bool) -> None:
    g = torch.Generator().manual_seed(2)
    n = 8
    support = torch.rand(30, n, generator=g) < 0.3
    spec = SparseSpectrum.from_support(support, torch.randn(30, generator=g).double()).coalesce()
    moeb = fourier_to_moebius(spec, dense=dense)
    masks = all_masks(n)
    assert torch.allclose(moeb.evaluate(masks), spec.evaluate(masks), atol=1e-11)
    back = moebius_to_fourier(moeb, dense=dense)
    assert torch.allclose(spectrum_to_dense(back), spectrum_to_dense(spec), atol=1e-12)


def test_round_trip_is_exact_on_dyadic_coefficients() -> None:
    spec = SparseSpectrum.from_sets([(), (0,), (1, 2), (0, 1, 3)], [0.5, -1.25, 2.0, 0.75], 4)
    back = moebius_to_fourier(fourier_to_moebius(spec)).prune()
    assert back.to_dict() == spec.to_dict()


def test_coalesce_sums_duplicates_and_orders_terms() -> None:
    spec = SparseSpectrum.from_sets([(2, 0), (1,), (0, 2), ()], [1.0, 2.0, 3.0, 4.0], 3)
    assert spec.to_dict() == {(): 4.0, (1,): 2.0, (0, 2): 4.0}
    assert spec.support.tolist() == [[False] * 3, [False, True, False], [True, False, True]]


def test_validation() -> None:
    with pytest.raises(ValueError, match="n_features"):
        SparseSpectrum(torch.tensor([[3]]), torch.ones(1), 3)
    with pytest.raises(ValueError, match="rows"):
        SparseSpectrum(torch.tensor([[0]]), torch.ones(2), 3)
    with pytest.raises(TypeError, match="int64"):
        SparseSpectrum(torch.tensor([[0.0]]), torch.ones(1), 3)
    with pytest.raises(ValueError, match="index"):
        SparseSpectrum(torch.tensor([[0]]), torch.ones(1), 3, basis="shapley")
    spec = SparseSpectrum.from_sets([(0,)], [1.0], 2, basis="SII")
    with pytest.raises(ValueError, match="Fourier"):
        spec.evaluate(torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[m, 2\]"):
        SparseSpectrum.from_sets([(0,)], [1.0], 2).evaluate(torch.ones(1, 3, dtype=torch.bool))


def test_deferred_spectrum_completes_once_on_first_read_and_keeps_its_shapley_values() -> None:
    """A DeferredSpectrum reads its Shapley values from the known part (odd terms and f(∅))
    and never completes for them; reading anything else completes it once, after which it is
    the complete spectrum; pickling, moving and dropping zeros work before and after."""
    import pickle

    from torchspex.fourier import DeferredSpectrum, fourier_to_index

    n = 5
    full = SparseSpectrum.from_sets([(), (0,), (1, 2), (0, 1, 3), (2, 4), (4,)],
                                    [0.5, -1.0, 0.75, 0.25, -0.5, 2.0], n)  # fmt: skip
    odd = full.orders % 2 == 1
    at_empty = full.coefficients.sum() - full.coefficients[odd].sum()  # the even part at ∅
    known = SparseSpectrum(torch.cat([torch.full((1, 3), -1), full.indices[odd]]),
                           torch.cat([at_empty.view(1), full.coefficients[odd]]), n)  # fmt: skip
    calls = []

    def complete() -> SparseSpectrum:
        calls.append(1)
        return full

    spec = DeferredSpectrum(known, complete)
    assert spec.is_deferred and spec.out_shape == () and "deferred" in repr(spec)
    sv = fourier_to_index(spec, "SV").to_dict()
    assert sv == pytest.approx(fourier_to_index(full, "SV").to_dict(), abs=1e-15)
    assert spec.is_deferred and not calls  # the Shapley values did not complete it
    moved = spec.to(torch.float32).prune()
    assert isinstance(moved, DeferredSpectrum) and moved.is_deferred and not calls
    masks = torch.tensor([[True, False, True, True, False], [False] * 5])
    torch.testing.assert_close(spec.evaluate(masks), full.evaluate(masks), rtol=0, atol=0)
    assert not spec.is_deferred and calls == [1]
    assert spec.n_terms == full.n_terms and torch.equal(spec.coefficients, full.coefficients)
    assert fourier_to_index(spec, "SV").to_dict() == sv  # unchanged by completing
    spec.complete()
    assert calls == [1]  # once
    assert moved.coefficients.dtype == torch.float32 and calls == [1, 1]  # its own completion
    back = pickle.loads(pickle.dumps(DeferredSpectrum(known, complete)))
    assert type(back) is SparseSpectrum and torch.equal(back.coefficients, full.coefficients)
    wrong = DeferredSpectrum(known, lambda: SparseSpectrum.zeros(n, (2,)))
    with pytest.raises(ValueError, match="does not match"):
        wrong.complete()
    assert wrong.is_deferred
    with pytest.raises(TypeError, match="Fourier"):
        DeferredSpectrum(known.replace(basis="Moebius"), complete)


def test_unique_rows_is_torch_unique_by_rows():
    """The lexicographic-sort unique behind wide set rows (where one integer key per row would
    overflow) returns torch.unique(dim=0)'s rows, order and inverse."""
    from torchspex.fourier._sets import coalesce, unique_rows

    g = torch.Generator().manual_seed(0)
    for n, width in ((1500, 8), (12, 3), (3000, 6)):
        rows = torch.randint(-1, n, (4000, width), generator=g).sort(dim=1).values
        rows = torch.cat([rows, rows[:500]])  # repeats
        expected = torch.unique(rows, dim=0, return_inverse=True)
        got = unique_rows(rows)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    empty, inverse = unique_rows(torch.zeros(3, 0, dtype=torch.long))
    assert empty.shape == (1, 0) and inverse.tolist() == [0, 0, 0]
    # coalesce on rows too wide for one key: duplicates summed, canonical order
    idx = torch.tensor([[5, 900, 1200, 1300, 1400, 1499], [0, -1, -1, -1, -1, -1],
                        [5, 900, 1200, 1300, 1400, 1499]])  # fmt: skip
    out_idx, out = coalesce(idx, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 1500)
    assert out_idx.tolist() == [[0, -1, -1, -1, -1, -1], [5, 900, 1200, 1300, 1400, 1499]]
    assert out.tolist() == [2.0, 4.0]


def test_sets_with_repeated_or_negative_features_are_refused() -> None:
    # (0, 0) was kept as an order-2 term: the constant character in the Fourier basis, {0} in
    # the Moebius one (so SV and Moebius disagreed); (-1,) was read as padding: a "last
    # feature" term merged into the constant
    for bad in ([(0, 0)], [(-1,)], [(-3, 1)], [(3,)]):
        with pytest.raises(ValueError, match=r"distinct features in 0\.\.2"):
            SparseSpectrum.from_sets([(), *bad], [1.0, 5.0], 3)
    with pytest.raises(ValueError, match="-1 is padding"):
        SparseSpectrum(torch.tensor([[-7, 2]]), torch.ones(1), 3)
    assert SparseSpectrum(torch.tensor([[2, -1]]), torch.ones(1), 3).to_dict() == {(2,): 1.0}


def test_prune_copies_unless_asked_and_reads_integer_coefficients() -> None:
    spec = SparseSpectrum.from_sets([(), (0,), (1,)], [1.0, 2.0, 0.0], 2)
    kept = SparseSpectrum.from_sets([(), (0,)], [1.0, 2.0], 2)
    for source, n_kept in ((spec, 2), (kept, 2)):
        out = source.prune()
        assert out.n_terms == n_kept
        out.coefficients.mul_(10)  # a copy: the source is untouched
        assert source.coefficients.tolist()[:2] == [1.0, 2.0]
    shared = kept.prune(copy=False)
    assert shared.coefficients.data_ptr() == kept.coefficients.data_ptr()
    assert spec.prune(copy=False).n_terms == 2  # a term dropped: a new tensor anyway
    ints = SparseSpectrum(torch.tensor([[-1], [0], [1]]), torch.tensor([1, 2, 0]), 2)
    assert ints.prune(atol=0.5).coefficients.tolist() == [1, 2]
    assert Interactions(ints, index="Fourier").values.to_dict() == {(): 1, (0,): 2}


def test_prune_keeps_nan_and_evaluate_refuses_bad_chunks() -> None:
    # prune() dropped a NaN term (NaN > atol is False), hiding it from every result;
    # chunk_size=-1 returned zeros
    spec = SparseSpectrum.from_sets([(0,), (1,)], [float("nan"), 1.0], 2)
    assert spec.prune().n_terms == 2
    assert SparseSpectrum.from_sets([(0,), (1,)], [0.0, 1.0], 2).prune().n_terms == 1
    masks = torch.tensor([[True, False], [False, True]])
    for bad in (-1, 0, 1.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            spec.evaluate(masks, chunk_size=bad)
    with pytest.raises(ValueError, match="power-of-two length"):
        fwht(torch.zeros(0))
