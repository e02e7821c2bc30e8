"""Planted games shared by decoder tests and benchmarks.

A planted game is a known sparse Fourier spectrum (optionally plus Gaussian noise or a dense
tail of small high-order terms) wrapped as a value function that counts its evaluations.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchspex.fourier import SparseSpectrum


def random_sets(
    n_features: int, n_sets: int, min_order: int, max_order: int, generator: torch.Generator
) -> Tensor:
    """``n_sets`` distinct random feature sets with sizes uniform in ``[min_order, max_order]``.

    Returns:
        ``int64 [n_sets, max_order]`` set rows (sorted, ``-1`` padded).
    """
    rows: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    while len(rows) < n_sets:
        size = int(torch.randint(min_order, max_order + 1, (1,), generator=generator))
        feats = torch.randperm(n_features, generator=generator)[:size].sort().values
        key = tuple(feats.tolist())
        if key not in seen:
            seen.add(key)
            rows.append(key)
    out = torch.full((n_sets, max(max_order, 1)), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.tensor(row)
    return out


def planted_spectrum(
    n_features: int,
    n_terms: int,
    max_order: int,
    generator: torch.Generator,
    *,
    min_order: int = 1,
    constant: float | None = 1.0,
    min_abs: float = 0.5,
    n_outputs: int | None = None,
) -> SparseSpectrum:
    """A random sparse Fourier spectrum: ``n_terms`` sets plus an optional constant.

    Coefficients have random signs and magnitudes uniform in ``[min_abs, 1]``.
    """
    sets = random_sets(n_features, n_terms, min_order, max_order, generator)
    shape = (n_terms,) if n_outputs is None else (n_terms, n_outputs)
    mag = min_abs + (1 - min_abs) * torch.rand(shape, generator=generator, dtype=torch.float64)
    sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0).double()
    coef = mag * sign
    if constant is not None:
        sets = torch.cat([torch.full((1, sets.shape[1]), -1, dtype=torch.long), sets])
        const = torch.full((1, *shape[1:]), constant, dtype=torch.float64)
        coef = torch.cat([const, coef])
    return SparseSpectrum(sets, coef, n_features, "Fourier").coalesce()


def dense_tail(
    n_features: int,
    n_terms: int,
    max_order: int,
    energy: float,
    generator: torch.Generator,
    *,
    min_order: int = 1,
) -> SparseSpectrum:
    """Many small terms of order up to ``max_order`` with total energy ``sum F^2 = energy``."""
    sets = random_sets(n_features, n_terms, min_order, max_order, generator)
    coef = torch.randn(n_terms, generator=generator, dtype=torch.float64)
    coef *= (energy / float((coef**2).sum())) ** 0.5
    return SparseSpectrum(sets, coef, n_features, "Fourier").coalesce()


def combine(*spectra: SparseSpectrum) -> SparseSpectrum:
    """Sum of spectra on the same features."""
    width = max(s.indices.shape[1] for s in spectra)
    idx = torch.cat(
        [torch.nn.functional.pad(s.indices, (0, width - s.indices.shape[1]), value=-1)
         for s in spectra]
    )
    coef = torch.cat([s.coefficients for s in spectra])
    return SparseSpectrum(idx, coef, spectra[0].n_features, "Fourier").coalesce()


class PlantedGame:
    """Value function of a planted spectrum with optional Gaussian noise; counts evaluations.

    Noise is a fixed function of the mask (seeded by the mask bits), so re-evaluating a mask
    gives the same value, as a deterministic model would.
    """

    def __init__(self, spectrum: SparseSpectrum, noise_sd: float = 0.0, seed: int = 0) -> None:
        self.spectrum = spectrum
        self.noise_sd = noise_sd
        self.seed = seed
        self.n_evaluations = 0
        self.n_calls = 0
        n = spectrum.n_features
        g = torch.Generator().manual_seed(seed)
        self._hash = torch.randint(-(2**62), 2**62, (n,), generator=g)

    def __call__(self, masks: Tensor) -> Tensor:
        masks = torch.as_tensor(masks).bool()
        self.n_calls += 1
        self.n_evaluations += masks.shape[0]
        values = self.spectrum.evaluate(masks)
        if self.noise_sd:
            key = (masks.long() * self._hash).sum(dim=1) ^ self.seed  # wraps: a mask hash
            width = max(1, int(torch.tensor(self.spectrum.out_shape).prod()))
            cols = torch.arange(2 * width, dtype=torch.long)
            u = _uniform(_splitmix64(key[:, None] + cols * 0x632BE59BD9B4E019))
            u1, u2 = u[:, :width].clamp(min=1e-300), u[:, width:]
            noise = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)  # Box-Muller
            values = values + self.noise_sd * noise.reshape(values.shape)
        return values


def _splitmix64(x: Tensor) -> Tensor:
    """SplitMix64 finalizer on int64 (two's complement wrap-around), vectorized."""
    x = x + (0x9E3779B97F4A7C15 - (1 << 64))
    x = (x ^ _shr(x, 30)) * (0xBF58476D1CE4E5B9 - (1 << 64))
    x = (x ^ _shr(x, 27)) * (0x94D049BB133111EB - (1 << 64))
    return x ^ _shr(x, 31)


def _shr(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _uniform(x: Tensor) -> Tensor:
    """Top 53 bits of a 64-bit hash -> float64 in [0, 1)."""
    return _shr(x, 11).double() / float(1 << 53)


def held_out_r2(
    truth: SparseSpectrum, learned: SparseSpectrum, n_masks: int, generator: torch.Generator
) -> float:
    """R^2 of ``learned`` against the noiseless ``truth`` on uniform random masks."""
    masks = torch.rand(n_masks, truth.n_features, generator=generator) < 0.5
    y = truth.evaluate(masks).reshape(n_masks, -1)
    yhat = learned.evaluate(masks).reshape(n_masks, -1)
    ss_res = float(((y - yhat) ** 2).sum())
    ss_tot = float(((y - y.mean(dim=0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot


def max_coefficient_error(truth: SparseSpectrum, learned: SparseSpectrum) -> float:
    """Largest absolute difference of coefficients over the union of both supports."""
    neg = learned.replace(coefficients=-learned.coefficients)
    diff = combine(truth, neg)
    return float(diff.coefficients.abs().max()) if diff.n_terms else 0.0


def even_shift(shrunk: SparseSpectrum, plain: SparseSpectrum, factor: float) -> Tensor:
    """``shrunk``'s even coefficients (the constant included) less ``plain``'s, its even terms
    of order >= 2 scaled by ``factor`` (0 where a spectrum lacks the term), one output: the
    James-Stein scaling with its change at the corners spread back is one shift for all of
    them (:func:`torchspex.decoders._shrink.scale_even`)."""
    n = plain.n_features
    both = combine(shrunk, SparseSpectrum(plain.indices, -plain.coefficients, n))
    sizes = both.orders
    even = sizes % 2 == 0
    # both = shrunk - plain; the scaling wants shrunk - factor * plain on orders >= 2
    plain_d = plain.to_dict()
    rows = [tuple(i for i in r if i >= 0) for r in both.indices[even].tolist()]
    diff = both.coefficients[even].double().reshape(-1)
    scaled_back = torch.tensor([(1.0 - factor) * plain_d.get(k, 0.0) if len(k) >= 2 else 0.0
                                for k in rows], dtype=torch.float64)  # fmt: skip
    return diff + scaled_back
