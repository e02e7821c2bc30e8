"""shapiq 1.8's other indices: each equals its textbook definition by brute force over all
coalitions (random games, n = 1..10, float64, 1e-10), with its ``()`` convention; properties.

The oracles below enumerate every coalition ``S`` and every set ``T`` (dense ``2^n x 2^n``
weight matrices); they are the definitions, not torchspex's Möbius route. shapiq 1.8.0 itself
(Python >= 3.12) is compared in ``benchmarks/indices_vs_shapiq18.py``.
"""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest
import torch

from torchspex import Interactions, SparseSpectrum
from torchspex.fourier import canonical_index, dense_to_spectrum, fourier_to_index, fwht
from torchspex.fourier.elc import MAX_ELC_FEATURES, egalitarian_least_core
from torchspex.fourier.generalized import generalized_index, generalized_values
from torchspex.fourier.transforms import fourier_to_moebius, moebius_to_index

TOL = 1e-10
# n = 9, 10: 2^n x 2^n oracle matrices, a second or two each
NS = [*range(1, 9), *(pytest.param(n, marks=pytest.mark.slow) for n in (9, 10))]


# ---------------------------------------------------------------------- brute-force oracles
def popcount(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    return sum((x >> i) & 1 for i in range(12))  # n <= 10 here


def random_game(n: int, seed: int) -> tuple[SparseSpectrum, np.ndarray]:
    """A dense random Fourier spectrum and its ``2^n`` values (bit ``i`` = player ``i``)."""
    g = torch.Generator().manual_seed(1000 * n + seed)
    coef = torch.randn(1 << n, generator=g, dtype=torch.float64)
    return dense_to_spectrum(coef, n, "Fourier"), fwht(coef).numpy()


def base_interaction(v: np.ndarray, n: int, weight, order: int) -> dict[int, float]:
    """``I(T) = sum_S (-1)^{|T| - |S ∩ T|} w(|S \\ T|, |T|) v(S)`` (discrete derivatives)."""
    masks = np.arange(1 << n)
    t = popcount(masks)
    inter = popcount(masks[:, None] & masks[None, :])
    outside = t[None, :] - inter
    table = np.array([[weight(b, tt) for tt in range(n + 1)] for b in range(n + 1)])
    w = table[outside, np.broadcast_to(t[:, None], outside.shape)]
    vals = ((-1.0) ** (t[:, None] - inter) * w) @ v
    return {int(m): float(vals[m]) for m in masks if t[m] <= order}


def generalized(v: np.ndarray, n: int, weight, order: int) -> dict[int, float]:
    """``GV(T) = sum_{S ⊆ N \\ T} p(|S|, |T|) (v(S ∪ T) - v(S))``, ``1 <= |T| <= order``."""
    masks = np.arange(1 << n)
    size = popcount(masks)
    disjoint = (masks[:, None] & masks[None, :]) == 0
    table = np.array([[weight(s, t) if t else 0.0 for t in range(n + 1)] for s in range(n + 1)])
    w = table[np.broadcast_to(size[None, :], disjoint.shape),
              np.broadcast_to(size[:, None], disjoint.shape)] * disjoint  # fmt: skip
    marg = v[masks[:, None] | masks[None, :]] - v[masks][None, :]
    vals = (w * marg).sum(axis=1)
    out = {int(m): float(vals[m]) for m in masks if 1 <= size[m] <= order}
    out[0] = float(v[0])  # shapiq's () entry: the baseline f(empty)
    return out


def joint_sv_weights(n: int, order: int) -> list[float]:
    """Harris et al. (2022)'s coalition weights ``q_0 .. q_{n-1}`` (recursion, exact)."""
    q = [Fraction(0)] * n
    q[0] = Fraction(1, sum(comb(n, s) for s in range(1, order + 1)))
    for r in range(1, n):
        den = sum(comb(n - r, s) for s in range(1, min(order, n - r) + 1))
        q[r] = sum((comb(r, s) * q[s] for s in range(max(r - order, 0), r)), Fraction(0)) / den
    return [float(x) for x in q]


def oracle(index: str, v: np.ndarray, n: int, order: int) -> dict[int, float]:
    if index == "Co-Moebius":  # sum_{A ⊆ T} (-1)^{|T|-|A|} v(A ∪ (N \ T)); () = f(empty)
        out = base_interaction(v, n, lambda b, t: float(b == n - t), order)
        out[0] = float(v[0])
        return out
    if index == "CHII":  # Marichal and Roubens: t / ((t + b) C(n, t + b)); () = f(empty)
        out = base_interaction(
            v, n, lambda b, t: t / ((t + b) * comb(n, t + b)) if t and b <= n - t else 0.0, order
        )
        out[0] = float(v[0])
        return out
    if index == "Fourier":  # 2^-n sum_S (-1)^{|S ∩ T|} v(S)
        return base_interaction(v, n, lambda b, t: (-1.0) ** t / 2**n, order)
    weights = {
        "SGV": lambda s, t: 1 / ((n - t + 1) * comb(n - t, s)) if s <= n - t else 0.0,
        "BGV": lambda s, t: 1 / 2 ** (n - t),
        "CHGV": lambda s, t: t / ((t + s) * comb(n, t + s)) if s <= n - t else 0.0,
        "IGV": lambda s, t: float(s == 0),
        "EGV": lambda s, t: float(s == n - t),
    }
    if index == "JointSV":
        q = joint_sv_weights(n, order)
        return generalized(v, n, lambda s, t: q[s] if s < n else 0.0, order)
    return generalized(v, n, weights[index], order)


def kadd_shap(v: np.ndarray, n: int, order: int) -> dict[int, float]:
    """Pelegrina et al. (2023): the Shapley-kernel weighted least-squares fit of ``v - v(0)``
    by ``sum_{1 <= |T| <= k} I(T) gamma(|T|, |S ∩ T|)``, ``gamma(t, q) = sum_{l=1}^{q}
    C(q, l) B_{t-l}``, with ``S = N`` an equality constraint (KKT system); ``()`` = f(empty)."""
    bern = [Fraction(1)]
    for m in range(1, order + 1):
        bern.append(-sum(comb(m + 1, j) * bern[j] for j in range(m)) / (m + 1))
    gamma = np.array([[float(sum((comb(q, j) * bern[t - j] for j in range(1, q + 1)),
                                 Fraction(0))) for q in range(order + 1)]
                      for t in range(order + 1)])  # fmt: skip
    masks = np.arange(1 << n)
    size = popcount(masks)
    sets = masks[(size >= 1) & (size <= order)]
    x = gamma[popcount(sets)[None, :], popcount(masks[:, None] & sets[None, :])]
    y = v - v[0]
    full = (1 << n) - 1
    inner = (masks != 0) & (masks != full)
    w = np.array([1 / ((n - 1) * comb(n - 2, int(s) - 1)) if 0 < s < n else 0.0 for s in size])
    a = x[inner] * np.sqrt(w[inner])[:, None]
    b = y[inner] * np.sqrt(w[inner])
    p = len(sets)
    kkt = np.block([[a.T @ a, x[[full]].T], [x[[full]], np.zeros((1, 1))]])
    sol = np.linalg.solve(kkt, np.concatenate([a.T @ b, y[[full]]]))[:p]
    out = {int(m): float(s) for m, s in zip(sets, sol)}
    out[0] = float(v[0])
    return out


def as_masks(spec: SparseSpectrum) -> dict[int, float]:
    return {sum(1 << i for i in s): float(c) for s, c in spec.to_dict().items()}


def max_diff(a: dict, b: dict) -> float:
    return max(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def orders(n: int) -> list[int]:
    return sorted({o for o in (1, 2, 3, n) if o <= n})


LINEAR = ["Co-Moebius", "CHII", "Fourier", "SGV", "BGV", "CHGV", "IGV", "EGV", "JointSV"]


# ---------------------------------------------------------------------- definitions
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("index", LINEAR)
def test_equals_brute_force_definition(index, n):
    spec, v = random_game(n, 0)
    for order in orders(n):
        expected = oracle(index, v, n, order) if index == "JointSV" or order == 1 else {
            k: c for k, c in oracle(index, v, n, n).items() if bin(k).count("1") <= order
        }  # the others do not depend on the order cap: one oracle run, filtered
        assert max_diff(as_masks(fourier_to_index(spec, index, order)), expected) < TOL
    if n in (3, 7):  # the sparse route (term by term, no 2^n vectors) and the Möbius input
        order = min(2, n)
        expected = oracle(index, v, n, order)
        assert max_diff(as_masks(fourier_to_index(spec, index, order, dense=False)),
                        expected) < TOL  # fmt: skip
        moebius = fourier_to_moebius(spec)
        assert max_diff(as_masks(moebius_to_index(moebius, index, order)), expected) < TOL


@pytest.mark.parametrize("n", NS)
def test_kadd_shap_equals_weighted_least_squares(n):
    spec, v = random_game(n, 1)
    for order in sorted({o for o in (1, 2, 3) if o <= n} | ({n} if n <= 5 else set())):
        expected = kadd_shap(v, n, order)
        assert max_diff(as_masks(fourier_to_index(spec, "kADD-SHAP", order)), expected) < TOL


def test_sparse_spectrum_large_n_matches_dense_route():
    # a sparse spectrum on n = 12 (dense route) vs the sparse listing, every generalized value
    g = torch.Generator().manual_seed(3)
    sets = [()] + [tuple(sorted(torch.randperm(12, generator=g)[:k].tolist()))
                   for k in (1, 2, 2, 3, 3, 4, 5)]  # fmt: skip
    spec = SparseSpectrum.from_sets(sets, torch.randn(len(sets), generator=g,
                                                      dtype=torch.float64), 12)  # fmt: skip
    for index in ("SGV", "BGV", "CHGV", "IGV", "EGV", "JointSV"):
        dense = as_masks(generalized_index(spec, index, 3, dense=True))
        sparse = as_masks(generalized_index(spec, index, 3, dense=False))
        assert max_diff(dense, sparse) < TOL


# ---------------------------------------------------------------------- conventions
def test_empty_set_conventions():
    spec, v = random_game(4, 2)
    for index in ("Co-Moebius", "CHII", "kADD-SHAP", "SGV", "BGV", "CHGV", "IGV", "EGV",
                  "JointSV"):  # fmt: skip
        assert fourier_to_index(spec, index, 2).to_dict()[()] == pytest.approx(v[0], abs=TOL)
    assert fourier_to_index(spec, "Fourier", 2).to_dict()[()] == pytest.approx(v.mean(), abs=TOL)
    assert () not in fourier_to_index(spec, "ELC").to_dict()


def test_order_one_and_full_order_reductions():
    spec, _ = random_game(6, 3)
    sv = fourier_to_index(spec, "SV").to_dict()
    bv = fourier_to_index(spec, "BV").to_dict()
    for index in ("CHII", "kADD-SHAP", "SGV", "CHGV", "JointSV"):
        got = fourier_to_index(spec, index, 1).to_dict()
        assert all(got[(i,)] == pytest.approx(sv.get((i,), 0.0), abs=TOL) for i in range(6))
    got = fourier_to_index(spec, "BGV", 1).to_dict()
    assert all(got[(i,)] == pytest.approx(bv.get((i,), 0.0), abs=TOL) for i in range(6))
    # kADD-SHAP at full order is the SII of the (exactly fitted) game
    full = max_diff(as_masks(fourier_to_index(spec, "kADD-SHAP", 6)),
                    as_masks(fourier_to_index(spec, "SII", 6)))  # fmt: skip
    sii_empty = fourier_to_index(spec, "SII", 6).to_dict()[()]
    kadd_empty = fourier_to_index(spec, "kADD-SHAP", 6).to_dict()[()]
    assert full == pytest.approx(abs(sii_empty - kadd_empty), abs=TOL)  # only () differs
    # Fourier is the spectrum itself, BII(T) = (-2)^|T| F(T)
    fourier = fourier_to_index(spec, "Fourier", 3).to_dict()
    bii = fourier_to_index(spec, "BII", 3).to_dict()
    assert all(bii.get(k, 0.0) == pytest.approx((-2) ** len(k) * c, abs=TOL)
               for k, c in fourier.items())  # fmt: skip


def test_spellings():
    assert canonical_index("kadd-shap") == "kADD-SHAP"
    assert canonical_index("co-moebius") == "Co-Moebius"
    assert canonical_index("jointsv") == "JointSV"
    for name in ("Co-Moebius", "CHII", "kADD-SHAP", "SGV", "BGV", "CHGV", "IGV", "EGV",
                 "JointSV", "ELC"):  # fmt: skip
        assert canonical_index(name) == name


# ---------------------------------------------------------------------- properties
@pytest.mark.parametrize("n", [2, 4, 7, 10])
def test_efficiency(n):
    spec, v = random_game(n, 4)
    gain = v[-1] - v[0]
    for order in orders(n):
        kadd = fourier_to_index(spec, "kADD-SHAP", order).to_dict()
        assert sum(c for k, c in kadd.items() if len(k) == 1) == pytest.approx(gain, abs=1e-9)
        joint = fourier_to_index(spec, "JointSV", order).to_dict()
        assert sum(c for k, c in joint.items() if k) == pytest.approx(gain, abs=1e-9)
    x = fourier_to_index(spec, "ELC").coefficients.sum()
    assert float(x) == pytest.approx(gain, abs=1e-9)


def symmetric_dummy_game(n: int) -> SparseSpectrum:
    """Players 0 and 1 symmetric, player n - 1 a null player (no term holds it)."""
    g = torch.Generator().manual_seed(n)
    sets, coef = [()], [0.5]
    for _ in range(6):
        k = int(torch.randint(1, n - 2, (1,), generator=g)) if n > 3 else 1
        rest = tuple((torch.randperm(n - 3, generator=g)[: k - 1] + 2).tolist()) if n > 3 else ()
        c = float(torch.randn(1, generator=g))
        sets += [(0, *rest), (1, *rest)]
        coef += [c, c]
    sets.append((0, 1))
    coef.append(0.7)
    return SparseSpectrum.from_sets(sets, coef, n, basis="Moebius")


@pytest.mark.parametrize("index", [*LINEAR, "kADD-SHAP", "ELC"])
def test_symmetry_and_null_player(index):
    n = 6
    moebius = symmetric_dummy_game(n)
    spec = SparseSpectrum.from_sets(*zip(*moebius.to_dict().items()), n, basis="Moebius")
    values = moebius_to_index(spec, index, None if index == "ELC" else 3).to_dict()

    def swap(key):
        return tuple(sorted({0: 1, 1: 0}.get(i, i) for i in key))

    for key, c in values.items():  # symmetry: swapping players 0 and 1 maps values to values
        assert values.get(swap(key), 0.0) == pytest.approx(c, abs=1e-9), key
    null = n - 1
    if index in ("ELC",):
        return
    if index == "Fourier":  # the null player is in no Fourier term either
        assert all(abs(c) < TOL for k, c in values.items() if null in k)
        return
    assert abs(values.get((null,), 0.0)) < TOL  # a null player adds nothing on its own
    if index in ("Co-Moebius", "CHII", "kADD-SHAP"):  # no interaction holds it
        assert all(abs(c) < TOL for k, c in values.items() if null in k)
    if index in ("SGV", "BGV", "IGV", "EGV"):  # joining a null player changes no block's value
        for key, c in values.items():
            if key and null not in key and len(key) < 3:
                assert values.get(tuple(sorted((*key, null))), 0.0) == pytest.approx(c, abs=TOL)


# ---------------------------------------------------------------------- ELC
def least_core_lp(v: np.ndarray, n: int) -> float:
    """The least-core value by the dual LP: max sum_S y_S v'(S) - ... (weak/strong duality)."""
    from scipy.optimize import linprog

    vp = v - v[0]
    masks = np.arange(1, (1 << n) - 1)
    members = ((masks[:, None] >> np.arange(n)) & 1).astype(float)
    # dual of min e s.t. x(S) + e >= v'(S), x(N) = v'(N), e >= 0:
    # max sum_S y_S v'(S) + z v'(N)  s.t.  sum_{S ∋ i} y_S + z = 0 (each i), sum_S y_S <= 1, y >= 0
    m = len(masks)
    cost = -np.concatenate([vp[masks], [vp[-1]]])
    a_eq = np.hstack([members.T, np.ones((n, 1))])
    a_ub = np.concatenate([np.ones(m), [0.0]])[None, :]
    res = linprog(cost, A_ub=a_ub, b_ub=[1.0], A_eq=a_eq, b_eq=np.zeros(n),
                  bounds=[(0, None)] * m + [(None, None)], method="highs-ipm")  # fmt: skip
    return -res.fun


@pytest.mark.parametrize("n", range(1, 9))
def test_elc_is_the_min_norm_point_of_the_least_core(n):
    from scipy.optimize import linprog

    spec, v = random_game(n, 5)
    values, subsidy = egalitarian_least_core(spec)
    x = values.coefficients.numpy()
    vp = v - v[0]
    assert x.sum() == pytest.approx(vp[-1], abs=1e-9)  # efficiency
    if n == 1:
        assert float(subsidy) == 0.0
        return
    masks = np.arange(1, (1 << n) - 1)
    members = ((masks[:, None] >> np.arange(n)) & 1).astype(float)
    e = float(subsidy)
    assert e == pytest.approx(max(least_core_lp(v, n), 0.0), abs=1e-8)  # the least-core value
    assert (members @ x >= vp[masks] - e - 1e-8).all()  # x is in the least core
    # x is the projection of 0 on the least core: x . (y - x) >= 0 for every y in it
    res = linprog(x, A_ub=-members, b_ub=-(vp[masks] - e), A_eq=np.ones((1, n)), b_eq=[vp[-1]],
                  bounds=[(None, None)] * n, method="highs")  # fmt: skip
    assert res.fun >= x @ x - 1e-8


def test_elc_textbook_games():
    # 3-player majority game: empty core, least core e* = 1/3, ELC (1/3, 1/3, 1/3)
    majority = np.array([0, 0, 0, 1, 0, 1, 1, 1], dtype=float)
    spec = dense_to_spectrum(fwht(torch.tensor(majority)) / 8, 3, "Fourier")
    values, subsidy = egalitarian_least_core(spec)
    assert values.coefficients.tolist() == pytest.approx([1 / 3] * 3, abs=1e-9)
    assert float(subsidy) == pytest.approx(1 / 3, abs=1e-9)
    # additive game: the core is one point, the game's own values; no subsidy
    spec = SparseSpectrum.from_sets([(), (0,), (1,), (2,)], [5.0, 1.0, -2.0, 0.5], 3, "Moebius")
    values, subsidy = egalitarian_least_core(spec)
    assert values.coefficients.tolist() == pytest.approx([1.0, -2.0, 0.5], abs=1e-9)
    assert float(subsidy) == 0.0
    # batched outputs: one LP per output
    both = spec.replace(coefficients=torch.stack([spec.coefficients, 2 * spec.coefficients], 1))
    values, subsidy = egalitarian_least_core(both)
    assert values.coefficients[:, 1].tolist() == pytest.approx([2.0, -4.0, 1.0], abs=1e-9)


def test_elc_refuses_large_n():
    spec = SparseSpectrum.from_sets([(0,)], [1.0], MAX_ELC_FEATURES + 1)
    with pytest.raises(ValueError, match="n_features <= 16"):
        egalitarian_least_core(spec)


# ---------------------------------------------------------------------- API
def test_generalized_values_of_chosen_coalitions_match_listing():
    spec, _ = random_game(7, 6)
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(40, 7, generator=g) < 0.4
    masks[0] = False
    for index in ("SGV", "BGV", "CHGV", "IGV", "EGV", "JointSV"):
        listing = generalized_index(spec, index, 7).to_dict()
        got = generalized_values(spec, index, masks)
        for row, value in zip(masks.tolist(), got.tolist()):
            key = tuple(i for i, b in enumerate(row) if b)
            assert value == pytest.approx(listing.get(key, 0.0), abs=TOL)
    with pytest.raises(ValueError, match="JointSV is defined for coalitions of size"):
        generalized_values(spec, "JointSV", torch.ones(1, 7, dtype=torch.bool), max_order=2)


def test_generalized_listing_refuses_too_many_coalitions():
    spec = SparseSpectrum.from_sets([(0, 1)], [1.0], 1000, basis="Moebius")
    assert generalized_index(spec, "SGV", 1).to_dict() == {(): 0.0, (0,): 0.5, (1,): 0.5}
    with pytest.raises(ValueError, match="generalized_values"):
        generalized_index(spec, "SGV", 3)


def test_interactions_views_and_batches():
    spec, _ = random_game(5, 7)
    batched = spec.replace(coefficients=torch.stack([spec.coefficients, -spec.coefficients], 1))
    for index in ("Co-Moebius", "CHII", "kADD-SHAP", "SGV", "JointSV", "ELC"):
        single = Interactions(spec, index=index, max_order=2).values.to_dict()
        pair = Interactions(batched, index=index, max_order=2).values.to_dict()
        for key, c in single.items():
            if index == "ELC":  # not linear: checked per output instead
                assert pair[key][0] == pytest.approx(c, abs=1e-9)
            else:
                assert pair[key] == pytest.approx([c, -c], abs=TOL)


@pytest.mark.slow  # importing shapiq alone takes seconds
def test_shapiq_round_trip_of_new_indices():
    shapiq = pytest.importorskip("shapiq")
    spec, _ = random_game(5, 8)
    for index in ("Co-Moebius", "CHII", "kADD-SHAP", "SGV", "BGV", "CHGV", "IGV", "EGV",
                  "JointSV", "ELC"):  # fmt: skip
        for order in (1, 2, 3):
            result = Interactions(spec, index=index, max_order=None if index == "ELC" else order)
            iv = result.to_shapiq()
            assert isinstance(iv, shapiq.InteractionValues)
            back = Interactions.from_shapiq(iv).to_shapiq()
            assert back.index == iv.index
            a, b = dict(iv.interactions), dict(back.interactions)
            assert max(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b)) < 1e-9


@pytest.mark.parametrize("n", [2, 4, 6])
def test_elc_shapiq_objective_is_its_exact_minimum(n):
    from torchspex.fourier.elc import _least_distance

    spec, v = random_game(n, 9)
    lexi, e_star = egalitarian_least_core(spec)
    joint, e = egalitarian_least_core(spec, objective="shapiq")
    x = joint.coefficients.numpy()
    assert x.sum() == pytest.approx(v[-1] - v[0], abs=1e-9)
    assert float(e) >= float(e_star) - 1e-12  # it may pay more than the least core
    best = float(np.linalg.norm(x) + e)
    assert best <= float(np.linalg.norm(lexi.coefficients.numpy()) + e_star) + 1e-12
    # no other subsidy does better (x(e) is the min-norm point of the e-relaxed core)
    vp = (v - v[0]) / np.abs(v - v[0]).max()
    masks = np.arange(1, (1 << n) - 1)
    members = ((masks[:, None] >> np.arange(n)) & 1).astype(float)
    scale = np.abs(v - v[0]).max()
    for trial in np.linspace(float(e_star), float(e_star) + 5 * scale, 25) / scale:
        other = trial + np.linalg.norm(_least_distance(members, vp, masks, trial))
        assert best / scale <= other + 1e-9
    with pytest.raises(ValueError, match="objective"):
        egalitarian_least_core(spec, objective="l1")
