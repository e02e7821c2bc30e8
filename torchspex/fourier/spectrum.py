"""The sparse spectrum container."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from torchspex.fourier._sets import (
    coalesce,
    indices_to_support,
    normalize_indices,
    set_sizes,
    support_to_indices,
)
from torchspex.fourier.indices import canonical_index

__all__ = ["DeferredSpectrum", "SparseSpectrum"]

#: A Fourier spectrum with more than this many pairs per feature evaluates its pairs as one
#: quadratic form in ``(-1)^x`` (``m n^2`` flops) instead of term by term (``m`` times the
#: pairs, through a gather): every pair of 327 features (53,301, what a corner correction
#: spreads over) on 2,000 masks took 2.6 s term by term.
PAIRS_AS_MATRIX = 8
#: ... while its ``[n, n, o]`` matrix has at most this many entries (as many per chunk of masks)
PAIRS_MATRIX_SIZE = 1 << 24


@dataclass(frozen=True, eq=False)
class SparseSpectrum:
    """A sparse set function: one coefficient (or vector of them) per feature set.

    The terms are stored in *index form*: ``indices[i]`` holds the sorted features of term ``i``
    padded with ``-1``, so memory is ``O(s * max_order)`` rather than ``O(s * n_features)``.
    ``support`` gives the bool ``[s, n_features]`` view on demand.

    Attributes:
        indices: ``int64 [s, d]`` feature indices of each term, ascending, ``-1`` padded.
        coefficients: ``float [s, *out]``; ``out`` is ``()`` for a scalar output, ``(o,)`` for
            several outputs, ``(B,)`` or ``(B, o)`` for a batch of explained examples.
        n_features: number of features ``n``.
        basis: ``"Fourier"`` (``f(x) = sum_K F[K] (-1)^{|K & x|}``), ``"Moebius"``
            (``f(x) = sum_S a[S] prod_{i in S} x_i``) or the name of an interaction index.

    Example:
        >>> spec = SparseSpectrum.from_support(
        ...     torch.tensor([[False, False], [True, True]]), torch.tensor([1.0, 0.5]))
        >>> spec.evaluate(torch.tensor([[True, False], [True, True]]))
        tensor([0.5000, 1.5000])
    """

    indices: Tensor
    coefficients: Tensor
    n_features: int
    basis: str = "Fourier"

    def __post_init__(self) -> None:
        if not isinstance(self.n_features, int) or isinstance(self.n_features, bool):
            raise TypeError(f"`n_features` must be an int; got {type(self.n_features).__name__}.")
        if self.n_features < 0:
            raise ValueError(f"`n_features` must be >= 0; got {self.n_features}.")
        if not isinstance(self.indices, Tensor) or self.indices.dim() != 2:
            raise ValueError("`indices` must be an int64 tensor [n_terms, width].")
        if self.indices.dtype != torch.long:
            raise TypeError(f"`indices` must be int64; got {self.indices.dtype}.")
        if not isinstance(self.coefficients, Tensor) or self.coefficients.dim() < 1:
            raise ValueError("`coefficients` must be a tensor [n_terms, *out].")
        if self.coefficients.shape[0] != self.indices.shape[0]:
            raise ValueError(
                f"`coefficients` has {self.coefficients.shape[0]} rows but `indices` has "
                f"{self.indices.shape[0]}; they must match."
            )
        if self.indices.numel() and int(self.indices.max()) >= self.n_features:
            raise ValueError(
                f"`indices` refers to feature {int(self.indices.max())} but `n_features` is "
                f"{self.n_features}."
            )
        if self.indices.numel() and int(self.indices.min()) < -1:
            raise ValueError(
                f"`indices` holds {int(self.indices.min())}: features are 0..n_features - 1 and "
                "-1 is padding."
            )
        object.__setattr__(self, "basis", canonical_index(self.basis))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_support(
        cls, support: Tensor, coefficients: Tensor, basis: str = "Fourier"
    ) -> SparseSpectrum:
        """Builds a spectrum from a bool support ``[s, n]`` and coefficients ``[s, *out]``."""
        if support.dim() != 2:
            raise ValueError(f"`support` must be 2-D [s, n]; got shape {tuple(support.shape)}.")
        return cls(support_to_indices(support.bool()), coefficients, support.shape[1], basis)

    @classmethod
    def from_sets(
        cls,
        sets: list[tuple[int, ...]],
        coefficients: Tensor | list[float],
        n_features: int,
        basis: str = "Fourier",
    ) -> SparseSpectrum:
        """Builds a spectrum from a list of feature tuples (a set listed twice: its coefficients
        are summed).

        Raises:
            ValueError: for a feature outside ``0..n_features - 1`` or repeated within a tuple.

        Example:
            >>> SparseSpectrum.from_sets([(), (0, 2)], [1.0, 2.0], 3).to_dict()
            {(): 1.0, (0, 2): 2.0}
        """
        coefficients = torch.as_tensor(coefficients, dtype=torch.float64)
        for s in sets:
            if len(set(s)) != len(s) or any(not 0 <= operator.index(i) < n_features for i in s):
                raise ValueError(
                    f"every set must hold distinct features in 0..{n_features - 1}; got "
                    f"{tuple(s)!r}."
                )
        width = max((len(s) for s in sets), default=0)
        idx = torch.full((len(sets), width), -1, dtype=torch.long)
        for i, s in enumerate(sets):
            if len(s):
                idx[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        return cls(normalize_indices(idx), coefficients, n_features, basis).coalesce()

    @classmethod
    def zeros(
        cls,
        n_features: int,
        out_shape: tuple[int, ...] = (),
        basis: str = "Fourier",
        dtype: torch.dtype = torch.float64,
    ) -> SparseSpectrum:
        """A spectrum with no terms."""
        return cls(
            torch.zeros(0, 0, dtype=torch.long),
            torch.zeros((0, *out_shape), dtype=dtype),
            n_features,
            basis,
        )

    # ------------------------------------------------------------------ views
    @property
    def n_terms(self) -> int:
        """Number of stored terms ``s``."""
        return self.indices.shape[0]

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Trailing shape of the coefficients."""
        return tuple(self.coefficients.shape[1:])

    @property
    def orders(self) -> Tensor:
        """Size of each term, ``int64 [s]``."""
        return set_sizes(self.indices)

    @property
    def max_size(self) -> int:
        """Largest term size present (0 for an empty spectrum)."""
        return int(self.orders.max()) if self.n_terms else 0

    @property
    def support(self) -> Tensor:
        """Bool ``[s, n_features]`` view of the terms."""
        return indices_to_support(self.indices, self.n_features)

    def sets(self) -> list[tuple[int, ...]]:
        """The terms as a list of feature tuples."""
        return [tuple(v for v in row if v >= 0) for row in self.indices.tolist()]

    def to_dict(self) -> dict[tuple[int, ...], float | list]:
        """``{feature tuple: coefficient}`` (a list when the coefficients are not scalar)."""
        return dict(zip(self.sets(), self.coefficients.tolist()))

    # ------------------------------------------------------------------ transforms
    def replace(self, **changes: object) -> SparseSpectrum:
        """A copy with some fields replaced."""
        fields = {
            "indices": self.indices,
            "coefficients": self.coefficients,
            "n_features": self.n_features,
            "basis": self.basis,
        }
        fields.update(changes)
        return SparseSpectrum(**fields)  # type: ignore[arg-type]

    def coalesce(self) -> SparseSpectrum:
        """Sorts the terms canonically and sums duplicates."""
        idx, coef = coalesce(normalize_indices(self.indices), self.coefficients, self.n_features)
        return self.replace(indices=idx, coefficients=coef)

    def prune(
        self, atol: float = 0.0, max_order: int | None = None, *, copy: bool = True
    ) -> SparseSpectrum:
        """Drops terms with all coefficients ``<= atol`` in magnitude, or above ``max_order``
        (a NaN coefficient is kept: it is not ``<= atol``). ``copy=False``: where no term is
        dropped, the result shares this spectrum's coefficients (no copy of them)."""
        if self.n_terms == 0:
            return self
        flat = self.coefficients.reshape(self.n_terms, -1)
        if flat.shape[1] == 0:
            keep = torch.ones(self.n_terms, dtype=torch.bool, device=flat.device)
        elif flat.is_floating_point() or flat.is_complex():
            # the largest |coefficient| per term without an |coef| copy (0.5x the seconds of
            # abs() <= atol on [56, 100,000]); a NaN is kept (NaN <= atol is False)
            keep = ~(torch.linalg.vector_norm(flat, float("inf"), dim=1) <= atol)
        else:  # integers (vector_norm takes floating point only)
            keep = ~(flat.abs() <= atol).all(dim=1)
        if max_order is not None:
            keep &= self.orders <= max_order
        if not copy and bool(keep.all()):
            idx = normalize_indices(self.indices) if self.indices.shape[1] else self.indices
            return self.replace(indices=idx)
        idx = normalize_indices(self.indices[keep]) if self.indices.shape[1] else self.indices[keep]
        return self.replace(indices=idx, coefficients=self.coefficients[keep])

    def to(self, *args: Any, **kwargs: Any) -> SparseSpectrum:
        """Moves/casts the coefficients (``indices`` follow the device); arguments as
        :meth:`torch.Tensor.to`."""
        coef = self.coefficients.to(*args, **kwargs)
        return self.replace(indices=self.indices.to(coef.device), coefficients=coef)

    def evaluate(self, masks: Tensor, chunk_size: int | None = None) -> Tensor:
        """Evaluates the set function on a batch of masks.

        Args:
            masks: ``bool [m, n_features]``, True = feature kept.
            chunk_size: masks per chunk (bounds memory to ``chunk_size * s * d``).

        Returns:
            ``[m, *out]`` values in the coefficients' dtype.

        Raises:
            ValueError: if the basis is not Fourier or Moebius, or the masks have the wrong width.
        """
        if self.basis not in ("Fourier", "Moebius"):
            raise ValueError(
                f"only 'Fourier' or 'Moebius' spectra can be evaluated; got basis {self.basis!r}."
            )
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"`chunk_size` must be a positive int or None; got {chunk_size!r}.")
        masks = torch.as_tensor(masks)
        if masks.dim() != 2 or masks.shape[1] != self.n_features:
            raise ValueError(
                f"`masks` must have shape [m, {self.n_features}]; got {tuple(masks.shape)}."
            )
        coef = self.coefficients
        masks = masks.to(device=coef.device).bool()
        m, s = masks.shape[0], self.n_terms
        flat = coef.reshape(s, math.prod(self.out_shape))
        out = torch.zeros(m, flat.shape[1], dtype=coef.dtype, device=coef.device)
        if s == 0 or m == 0:
            return out.reshape(m, *self.out_shape)
        idx = self.indices.to(coef.device)
        n, o = self.n_features, flat.shape[1]
        if self.basis == "Fourier" and n * n * o <= PAIRS_MATRIX_SIZE:
            pairs = set_sizes(idx) == 2
            if int(pairs.sum()) > PAIRS_AS_MATRIX * n:
                # many pairs: their sum over z = (-1)^x as a quadratic form (m n^2 flops, not
                # a gather of every pair per mask), masks in chunks; the other terms as below
                rest = SparseSpectrum(idx[~pairs], coef[~pairs], n)
                out = rest.evaluate(masks, chunk_size).reshape(m, -1)
                quad = torch.zeros(n, n * o, dtype=coef.dtype, device=coef.device)
                quad.view(n, n, o)[idx[pairs, 0], idx[pairs, 1]] = flat[pairs]
                step = max(1, PAIRS_MATRIX_SIZE // (n * o))
                for start in range(0, m, step):
                    z = 1.0 - 2.0 * masks[start : start + step].to(coef.dtype)  # [c, n]
                    zq = (z @ quad).view(z.shape[0], n, o)
                    out[start : start + step] += torch.einsum("ci,cio->co", z, zq)
                return out.reshape(m, *self.out_shape)
        padded = torch.cat([masks, torch.zeros(m, 1, dtype=torch.bool, device=masks.device)], 1)
        cols = torch.where(idx < 0, self.n_features, idx)  # padding reads a False column
        width = max(idx.shape[1], 1)
        if chunk_size is None:
            chunk_size = max(1, 2**24 // max(1, s * width))
        for start in range(0, m, chunk_size):
            sel = padded[start : start + chunk_size][:, cols]  # [c, s, d]
            if self.basis == "Fourier":
                parity = sel.sum(dim=2) % 2
                basis_vals = (1 - 2 * parity).to(coef.dtype)
            else:
                basis_vals = (sel | (idx < 0)).all(dim=2).to(coef.dtype)
            out[start : start + chunk_size] = basis_vals @ flat
        return out.reshape(m, *self.out_shape)

    def __repr__(self) -> str:
        return (
            f"SparseSpectrum(basis={self.basis!r}, n_features={self.n_features}, "
            f"n_terms={self.n_terms}, max_size={self.max_size}, out_shape={self.out_shape})"
        )


class DeferredSpectrum(SparseSpectrum):
    """A Fourier spectrum whose terms are computed the first time they are read.

    A decoder asked for Shapley values needs only the odd-order terms of the spectrum (every
    Shapley value is a sum of them) and its value at ∅; the even-order terms cost as much again
    to fit. It can hand back those (``known``) and defer the rest (``complete``): reading
    ``indices`` or ``coefficients`` (any other index, :meth:`evaluate`, saving) runs
    ``complete()`` once and the object is from then on the complete spectrum, the same tensors
    an eager decode gives. The Shapley values (:func:`~torchspex.fourier.fourier_to_index` with
    ``"SV"``) are read from ``known`` whether or not the rest was computed, so they never
    change.

    Args:
        known: a Fourier spectrum with the same odd-order terms and the same value at ∅ as the
            complete one (so the same Shapley values, and the same values at ∅ and at N).
        complete: returns the complete spectrum (same ``n_features`` and output shape).

    Example:
        >>> known = SparseSpectrum.from_sets([(), (0,)], [1.0, -0.5], 2)
        >>> spec = DeferredSpectrum(known, lambda: SparseSpectrum.from_sets(
        ...     [(), (0,), (0, 1)], [0.75, -0.5, 0.25], 2))
        >>> spec.is_deferred
        True
        >>> spec.n_terms, spec.is_deferred
        (3, False)
    """

    known: SparseSpectrum

    def __init__(self, known: SparseSpectrum, complete: Callable[[], SparseSpectrum]) -> None:
        if not isinstance(known, SparseSpectrum) or known.basis != "Fourier":
            raise TypeError("`known` must be a SparseSpectrum in the Fourier basis.")
        object.__setattr__(self, "n_features", known.n_features)
        object.__setattr__(self, "basis", "Fourier")
        object.__setattr__(self, "known", known)
        object.__setattr__(self, "_complete", complete)

    def __getattr__(self, name: str) -> Any:
        # only reached while ``indices`` / ``coefficients`` are not set: complete, then read
        if name in ("indices", "coefficients"):
            self.complete()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def is_deferred(self) -> bool:
        """Whether the terms beyond ``known`` are still to be computed."""
        return "indices" not in self.__dict__

    def complete(self) -> SparseSpectrum:
        """Computes the deferred terms (once) and returns the complete spectrum."""
        if self.is_deferred:
            full = self.__dict__["_complete"]()
            if full.n_features != self.n_features or full.out_shape != self.known.out_shape:
                raise ValueError("the completed spectrum does not match its known part.")
            object.__setattr__(self, "indices", full.indices)
            object.__setattr__(self, "coefficients", full.coefficients)
            object.__setattr__(self, "_complete", None)
        return SparseSpectrum(self.indices, self.coefficients, self.n_features)

    def then(self, step: Callable[[SparseSpectrum], SparseSpectrum]) -> SparseSpectrum:
        """``step`` applied to the spectrum, still deferred where it is: ``step`` must keep the
        odd-order terms and the value at ∅ of what it is given (a reshape of the outputs, a
        move to a device, dropping zero terms)."""
        if not self.is_deferred:
            return step(self.complete())
        complete = self.__dict__["_complete"]
        return DeferredSpectrum(step(self.known), lambda: step(complete()))

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Trailing shape of the coefficients (read from ``known``: it never completes)."""
        return self.known.out_shape

    def prune(
        self, atol: float = 0.0, max_order: int | None = None, *, copy: bool = True
    ) -> SparseSpectrum:
        """As :meth:`SparseSpectrum.prune`; dropping exact zeros stays deferred."""
        if atol == 0.0 and max_order is None:
            return self.then(lambda spec: spec.prune(copy=copy))
        return self.complete().prune(atol, max_order, copy=copy)

    def to(self, *args: Any, **kwargs: Any) -> SparseSpectrum:
        """As :meth:`SparseSpectrum.to`, still deferred where it is."""
        return self.then(lambda spec: SparseSpectrum.to(spec, *args, **kwargs))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (saved, sent to another process) complete: the deferred step is a closure
        return (SparseSpectrum, (self.indices, self.coefficients, self.n_features, self.basis))

    def __repr__(self) -> str:
        if self.is_deferred:
            return (f"DeferredSpectrum(n_features={self.n_features}, known terms="
                    f"{self.known.n_terms}, out_shape={self.out_shape}, deferred)")
        return super().__repr__()


def check_set_function(spectrum: Any) -> None:
    """Raises unless ``spectrum`` is a :class:`SparseSpectrum` of a set function: in the
    Fourier or the Möbius basis (not an index's values), as the index conversions, the ELC and
    the optimizer need.

    Raises:
        TypeError: for anything but a :class:`SparseSpectrum`.
        ValueError: for a spectrum in another basis.
    """
    if not isinstance(spectrum, SparseSpectrum):
        raise TypeError(f"`spectrum` must be a SparseSpectrum; got {type(spectrum).__name__}.")
    if spectrum.basis not in ("Fourier", "Moebius"):
        raise ValueError(
            f"`spectrum` must be in the Fourier or Moebius basis; got {spectrum.basis!r}."
        )
