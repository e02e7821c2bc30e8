import itertools

import numpy as np
import pytest
import torch

from tests import oracles
from torchspex.fourier import (
    INDEX_NAMES,
    SparseSpectrum,
    canonical_index,
    dense_to_spectrum,
    fourier_to_index,
    fourier_to_moebius,
    fwht,
    moebius_to_index,
)

ORDERED = ["SII", "k-SII", "BII", "STII", "FSII", "FBII", "Moebius", "Fourier"]


def random_game(n: int, seed: int) -> tuple[np.ndarray, SparseSpectrum]:
    rng = np.random.default_rng(seed)
    f = rng.normal(size=1 << n)
    coef = fwht(torch.from_numpy(f)) / (1 << n)
    return f, dense_to_spectrum(coef, n, "Fourier", keep=torch.ones(1 << n, dtype=torch.bool))


def assert_matches(mine: SparseSpectrum, expected: dict, atol: float = 1e-10) -> None:
    got = mine.to_dict()
    for key, value in expected.items():
        assert got.get(key, 0.0) == pytest.approx(value, abs=atol), key
    extra = {k: v for k, v in got.items() if k not in expected and abs(v) > atol}
    assert not extra, f"unexpected terms {list(extra)[:5]}"


def _orders(n: int) -> list[int]:
    if n >= 9:
        return [1, 2]
    return sorted({1, min(2, n), min(3, n), n if n <= 5 else 3})


CASES = [(name, n, order) for n in range(1, 11) for name in ORDERED for order in _orders(n)]


@pytest.mark.parametrize(("name", "n", "order"), CASES)
@pytest.mark.parametrize("dense", [False, True])
def test_every_index_equals_brute_force(name: str, n: int, order: int, dense: bool) -> None:
    f, spec = random_game(n, seed=n * 100 + order)
    expected = oracles.index(f, n, name, order)
    assert_matches(fourier_to_index(spec, name, order, dense=dense), expected)


@pytest.mark.parametrize("n", range(1, 9))
@pytest.mark.parametrize("name", ["SV", "BV"])
def test_shapley_and_banzhaf_values(n: int, name: str) -> None:
    f, spec = random_game(n, seed=n)
    assert_matches(fourier_to_index(spec, name), oracles.index(f, n, name, 1))


@pytest.mark.parametrize("n", range(1, 9))
def test_shapley_efficiency(n: int) -> None:
    f, spec = random_game(n, seed=3 * n)
    sv = fourier_to_index(spec, "SV").to_dict()
    total = sum(v for k, v in sv.items() if k)
    assert total == pytest.approx(f[-1] - f[0], abs=1e-12)


@pytest.mark.parametrize("name", ["SII", "k-SII", "BII", "STII", "FSII", "FBII", "SV", "BV"])
def test_moebius_path_equals_fourier_path(name: str) -> None:
    _, spec = random_game(6, seed=1)
    moeb = fourier_to_moebius(spec)
    for order in (1, 2, 4):
        a = fourier_to_index(spec, name, order).to_dict()
        b = moebius_to_index(moeb, name, order).to_dict()
        for key in set(a) | set(b):
            assert a.get(key, 0.0) == pytest.approx(b.get(key, 0.0), abs=1e-11)


@pytest.mark.parametrize("name", ["SII", "k-SII", "STII", "FSII", "FBII", "Moebius"])
def test_sparse_high_order_spectrum_matches_dense(name: str) -> None:
    """Sparse path on a few high-order terms equals the dense butterfly path."""
    g = torch.Generator().manual_seed(5)
    sets = [(0, 3, 5, 7, 9), (1, 2), (4,), (), (0, 1, 2, 3, 4, 5, 6, 7)]
    spec = SparseSpectrum.from_sets(sets, torch.randn(len(sets), generator=g).double(), 10)
    for order in (2, 3):
        sparse = fourier_to_index(spec, name, order, dense=False).to_dict()
        dense = fourier_to_index(spec, name, order, dense=True).to_dict()
        for key in set(sparse) | set(dense):
            assert sparse.get(key, 0.0) == pytest.approx(dense.get(key, 0.0), abs=1e-11)


def test_vector_outputs_convert_column_by_column() -> None:
    _, a = random_game(5, seed=1)
    _, b = random_game(5, seed=2)
    stacked = a.replace(coefficients=torch.stack([a.coefficients, b.coefficients], dim=1))
    both = fourier_to_index(stacked, "FSII", 2).to_dict()
    one = fourier_to_index(a, "FSII", 2).to_dict()
    two = fourier_to_index(b, "FSII", 2).to_dict()
    for key, (va, vb) in both.items():
        assert va == pytest.approx(one.get(key, 0.0), abs=1e-12)
        assert vb == pytest.approx(two.get(key, 0.0), abs=1e-12)


def test_index_names() -> None:
    assert canonical_index("mobius") == "Moebius"
    assert canonical_index("fsii") == "FSII"
    assert canonical_index("k-SII") == "k-SII"
    assert set(INDEX_NAMES) >= {"SII", "BII", "FBII", "Fourier"}
    with pytest.raises(ValueError, match=r"`index` must be one of \('Fourier'"):
        canonical_index("shapley")


def test_index_names_in_any_case_and_with_umlauts() -> None:
    assert canonical_index("K-SII") == canonical_index("KSII") == "k-SII"
    assert canonical_index("Co-Möbius") == canonical_index("CO_MOEBIUS") == "Co-Moebius"
    assert canonical_index("Möbius") == canonical_index("MOBIUS") == "Moebius"
    assert canonical_index("Joint SV") == canonical_index("jointSV") == "JointSV"
    # every canonical name is its own spelling, whatever the folding
    assert all(canonical_index(name) == name for name in INDEX_NAMES)
    assert all(canonical_index(name.upper()) == name for name in INDEX_NAMES)
    with pytest.raises(ValueError, match="must be one of"):
        canonical_index("K-SII2")


def test_large_sparse_conversion_is_fast_and_exact_on_a_slice() -> None:
    """n = 1000, 2000 terms of order <= 5: every index, vs the per-term definition on 3 sets."""
    g = torch.Generator().manual_seed(0)
    n, s = 1000, 2000
    sizes = torch.randint(0, 6, (s,), generator=g)
    idx = torch.full((s, 5), -1, dtype=torch.long)
    for i, k in enumerate(sizes.tolist()):
        idx[i, :k] = torch.randperm(n, generator=g)[:k].sort().values
    spec = SparseSpectrum(idx, torch.randn(s, generator=g, dtype=torch.float64), n).coalesce()
    moeb = fourier_to_moebius(spec).to_dict()
    # a(S) = (-2)^|S| sum_{K ⊇ S} F(K), checked directly for a few S
    sets = spec.sets()
    coef = spec.coefficients.tolist()
    for target in [sets[-1], sets[len(sets) // 2][:2], ()]:
        direct = (-2) ** len(target) * sum(
            c for k, c in zip(sets, coef) if set(target) <= set(k)
        )
        assert moeb[tuple(target)] == pytest.approx(direct, rel=1e-12, abs=1e-12)
    for name in ["SII", "k-SII", "BII", "STII", "FSII", "FBII", "SV", "BV"]:
        out = fourier_to_index(spec, name, 3)
        assert out.max_size <= (1 if name in ("SV", "BV") else 3)


def test_fwht_is_its_own_inverse_up_to_scale() -> None:
    v = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(fwht(fwht(v)) / 64, v, atol=1e-12)
    with pytest.raises(ValueError, match="power-of-two"):
        fwht(torch.zeros(6))


def test_all_subsets_enumerated() -> None:
    from torchspex.fourier._sets import subsets

    idx = torch.tensor([[0, 2, 5], [1, -1, -1]])
    sub, parent, size = subsets(idx)
    got = {(p, tuple(v for v in row if v >= 0)) for row, p in zip(sub.tolist(), parent.tolist())}
    want = {(0, s) for k in range(4) for s in itertools.combinations((0, 2, 5), k)}
    want |= {(1, ()), (1, (1,))}
    assert got == want
    assert size.tolist() == [sum(v >= 0 for v in row) for row in sub.tolist()]


@pytest.mark.parametrize("name", ["SV", "k-SII", "STII", "FSII", "Moebius"])
def test_many_columns_convert_by_one_sparse_product(name: str, monkeypatch) -> None:
    """With many columns (rows x outputs) the superset sums run as one sparse product; they
    equal the weighted copies (and each column converted alone), including the row order."""
    from torchspex.fourier import _basis

    g = torch.Generator().manual_seed(6)
    sets = [(), (0,), (2,), (0, 1), (1, 3), (0, 2, 5), (1, 2, 3, 4), (0, 1, 2, 3, 4, 5)]
    coef = torch.randn(len(sets), 70, 2, generator=g).double()  # 140 columns
    spec = SparseSpectrum.from_sets(sets, coef, 6)
    order = 1 if name == "SV" else 3
    product = fourier_to_index(spec, name, order, dense=False)
    monkeypatch.setattr(_basis, "SPARSE_PRODUCT_COLUMNS", 10**9)
    copies = fourier_to_index(spec, name, order, dense=False)
    assert torch.equal(product.indices, copies.indices)
    torch.testing.assert_close(product.coefficients, copies.coefficients, rtol=0, atol=1e-13)
    column = fourier_to_index(spec.replace(coefficients=coef[:, 7, 1]), name, order, dense=False)
    got, want = product.to_dict(), column.to_dict()
    for key in set(got) | set(want):
        value = np.asarray(got.get(key, np.zeros((70, 2))))[7, 1]
        assert value == pytest.approx(want.get(key, 0.0), abs=1e-12)
