"""The result type: a learned spectrum and views of it in any interaction index."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor

from torchspex import _formats, viz
from torchspex.fourier import DeferredSpectrum, SparseSpectrum, canonical_index, fourier_to_index
from torchspex.fourier.indices import FIRST_ORDER
from torchspex.fourier.transforms import index_source

__all__ = ["Interactions"]

_FORMAT_VERSION = 1
#: Values below this fraction of ``sum_K |F(K)|`` are round-off and are not listed.
_ZERO_TOL = 1e-13


def _check_order(max_order: int | None, n_features: int) -> int | None:
    if max_order is None:
        return None
    if isinstance(max_order, bool) or not isinstance(max_order, int):
        raise TypeError(f"`max_order` must be an int or None; got {type(max_order).__name__}.")
    if not 1 <= max_order <= max(n_features, 1):
        raise ValueError(
            f"`max_order` must be between 1 and n_features={n_features}; got {max_order}."
        )
    return max_order


class Interactions:
    """Interactions of a set function, read from its learned sparse Fourier spectrum.

    The Fourier spectrum is the single source of truth: every index, order cap, plot or export
    is a cheap view of it, and never queries the model again.

    Args:
        spectrum: the learned Fourier spectrum, coefficients ``[s, *out]``.
        index: interaction index for the default view (see :data:`torchspex.INDEX_NAMES`).
        max_order: order cap of the default view (``None``: no cap).
        n_evaluations: number of value-function (model) evaluations used to learn the spectrum.
        feature_names: display labels, one per feature.
        feature_ids: the identifiers results are keyed by (default ``0 .. n-1``); e.g. the
            original feature-mask group ids when they had gaps.
        method: the decoder that produced the spectrum.
        info: extra decoder diagnostics (kept in ``save``/``load``).

    Example:
        >>> spec = SparseSpectrum.from_sets([(), (0,), (0, 1)], [1.0, -0.5, 0.25], 2)
        >>> result = Interactions(spec, index="Moebius")
        >>> result[(0, 1)]
        1.0
        >>> result.baseline_value  # f(all features removed)
        0.75
    """

    def __init__(
        self,
        spectrum: SparseSpectrum,
        index: str = "k-SII",
        max_order: int | None = None,
        n_evaluations: int = 0,
        feature_names: Sequence[str] | None = None,
        feature_ids: Sequence[Hashable] | None = None,
        method: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(spectrum, SparseSpectrum):
            raise TypeError(f"`spectrum` must be a SparseSpectrum; got {type(spectrum).__name__}.")
        if spectrum.basis != "Fourier":
            raise ValueError(f"`spectrum` must be in the Fourier basis; got {spectrum.basis!r}.")
        n = spectrum.n_features
        self.spectrum = spectrum
        self.index = canonical_index(index)
        self.max_order = 1 if self.index in FIRST_ORDER else _check_order(max_order, n)
        self.n_evaluations = int(n_evaluations)
        self.feature_ids = tuple(range(n)) if feature_ids is None else tuple(feature_ids)
        if len(self.feature_ids) != n:
            raise ValueError(f"`feature_ids` must have {n} entries; got {len(self.feature_ids)}.")
        self.feature_names = (
            [str(i) for i in self.feature_ids] if feature_names is None else list(feature_names)
        )
        if len(self.feature_names) != n:
            raise ValueError(
                f"`feature_names` must have {n} entries; got {len(self.feature_names)}."
            )
        self.method = method
        self.info = dict(info or {})
        self._values: SparseSpectrum | None = None
        self._lookup: dict[tuple[int, ...], int] | None = None
        self._position = {fid: i for i, fid in enumerate(self.feature_ids)}
        self._warned_design = False

    # ------------------------------------------------------------------ basic facts
    @property
    def n_features(self) -> int:
        """Number of features (players)."""
        return self.spectrum.n_features

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Trailing shape of every value (``()`` for a scalar output)."""
        return self.spectrum.out_shape

    @property
    def values(self) -> SparseSpectrum:
        """The interactions in ``index`` up to ``max_order``, as a sparse set-indexed tensor."""
        if self._values is None:
            # what the conversion reads (for the Shapley values, the odd terms and f(∅): a
            # deferred spectrum stays so); the round-off bound is taken on it
            source = index_source(self.spectrum, self.index, self.max_order)
            view = fourier_to_index(source, self.index, self.max_order)
            self._values = view.prune(atol=_ZERO_TOL * self._scale(source))
        return self._values

    def _scale(self, spectrum: SparseSpectrum | None = None) -> float:
        coef = (self.spectrum if spectrum is None else spectrum).coefficients
        if not coef.numel():
            return 0.0
        if coef.is_floating_point() or coef.is_complex():
            # the norm without an |coef| copy (0.65x the seconds of abs().sum() on [56, 100,000])
            return float(torch.linalg.vector_norm(coef, 1, dim=0).max())
        return float(coef.abs().sum(dim=0).max())  # integers (vector_norm: floating point only)

    def _corners(self) -> SparseSpectrum:
        """A spectrum with this one's values at ∅ and N: the known part of a deferred one (so
        reading them completes nothing and gives the same value before and after)."""
        spec = self.spectrum
        return spec.known if isinstance(spec, DeferredSpectrum) else spec

    @property
    def baseline_value(self) -> float | Tensor:
        """The value with every feature removed, ``f(0) = sum_K F(K)``."""
        return self._scalar(self._corners().coefficients.sum(dim=0))

    @property
    def full_value(self) -> float | Tensor:
        """The value with every feature kept, ``f(1) = sum_K (-1)^{|K|} F(K)``."""
        ones = torch.ones(1, self.n_features, dtype=torch.bool)
        return self._scalar(self._corners().evaluate(ones)[0])

    def _scalar(self, value: Tensor) -> float | Tensor:
        return value.item() if value.dim() == 0 else value

    # ------------------------------------------------------------------ views
    def to_index(self, index: str, max_order: int | None = None) -> Interactions:
        """The same spectrum viewed in another index (no new model calls).

        Example:
            >>> spec = SparseSpectrum.from_sets([(), (0,), (0, 1)], [1.0, -0.5, 0.25], 2)
            >>> Interactions(spec).to_index("SV").to_dict()
            {(): 0.75, (0,): 1.0}

        Warns once when ``index`` is of the other family than the design the result was fitted
        for (see :meth:`design_family`).
        """
        self._check_design(index)
        return self._derive(type(self), self.spectrum, index, max_order)

    def select(self, *output: int) -> Interactions:
        """The interactions of one output (e.g. one example of a batch, or one class).

        ``result.select(b)`` indexes the first trailing dimension, ``select(b, c)`` two of them.

        Raises:
            IndexError: with more indices than the result has output dimensions, or an index
                outside one.
        """
        shape = self.out_shape
        if len(output) > len(shape):
            raise IndexError(
                f"select{output} names {len(output)} output dimension(s), but this result's "
                f"values have shape {shape} per interaction"
                + (" (one value each: nothing to select)" if not shape else "") + "."
            )
        for dim, (b, size) in enumerate(zip(output, shape)):
            if isinstance(b, bool) or not isinstance(b, int) or not -size <= b < size:
                raise IndexError(
                    f"select: index {b!r} of output dimension {dim} is outside [0, {size})."
                )
        key: tuple[slice | int, ...] = (slice(None), *output)
        coef = self.spectrum.coefficients[key]
        spectrum = self.spectrum.replace(coefficients=coef)
        return self._derive(Interactions, spectrum, self.index, self.max_order)

    def _derive(
        self, cls: type[Interactions], spectrum: SparseSpectrum, index: str, max_order: int | None
    ) -> Interactions:
        """A result of class ``cls`` over ``spectrum`` with this result's metadata."""
        derived = cls(
            spectrum,
            index=index,
            max_order=max_order,
            n_evaluations=self.n_evaluations,
            feature_names=self.feature_names,
            feature_ids=self.feature_ids,
            method=self.method,
            info=self.info,
        )
        derived._warned_design = self._warned_design
        return derived

    def _key(self, features: Sequence[Hashable]) -> tuple[int, ...]:
        try:
            key = tuple(sorted(self._position[f] for f in features))
        except KeyError as err:
            raise KeyError(
                f"feature {err.args[0]!r} is not one of this result's feature ids"
            ) from None
        if len(set(key)) != len(key):
            raise KeyError(f"an interaction names each feature once; got {tuple(features)!r}.")
        return key

    def __getitem__(self, features: Sequence[Hashable] | Hashable) -> float | Tensor:
        """The value of one interaction, keyed by a tuple of feature ids (0 when absent)."""
        if not isinstance(features, (tuple, list)):
            features = (features,)
        key = self._key(features)
        if self._lookup is None:
            self._lookup = {s: i for i, s in enumerate(self.values.sets())}
        pos = self._lookup.get(key)
        if pos is None:
            return self._scalar(torch.zeros(self.out_shape, dtype=self.spectrum.coefficients.dtype))
        return self._scalar(self.values.coefficients[pos])

    def _magnitude(self, coefficients: Tensor) -> Tensor:
        flat = coefficients.flatten(1) if coefficients.dim() > 1 else coefficients.unsqueeze(1)
        return flat.abs().amax(dim=1) if flat.shape[1] else torch.zeros(flat.shape[0])

    def top_k(
        self, k: int = 10, order: int | None = None, include_empty: bool = False
    ) -> list[tuple[tuple[Hashable, ...], float | Tensor]]:
        """The ``k`` strongest interactions by magnitude, as ``(feature ids, value)`` pairs.

        Args:
            k: how many to return.
            order: keep only interactions of exactly this order.
            include_empty: whether the empty set (the index's constant) may appear.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"`k` must be a non-negative int; got {k!r}.")
        if order is not None and (isinstance(order, bool) or not isinstance(order, int)
                                  or order < 0):  # fmt: skip
            raise ValueError(f"`order` must be a non-negative int or None; got {order!r}.")
        vals = self.values
        sizes = vals.orders
        keep = torch.ones_like(sizes, dtype=torch.bool)
        if order is not None:
            keep &= sizes == order
        if not include_empty:
            keep &= sizes > 0
        pos = torch.nonzero(keep).squeeze(1)
        mag = self._magnitude(vals.coefficients[pos])
        best = pos[torch.argsort(mag, descending=True, stable=True)[:k]]
        sets = [tuple(v for v in row if v >= 0) for row in vals.indices[best].tolist()]
        return [
            (tuple(self.feature_ids[i] for i in s), self._scalar(vals.coefficients[j]))
            for s, j in zip(sets, best.tolist())
        ]

    def design_family(self) -> str | None:
        """The index family the samples were drawn for: ``"shapley"``, ``"banzhaf"`` or ``None``.

        ``method="auto"`` and ``"regression"`` sample the design of the requested index's
        family (Shapley-kernel coalitions or uniform masks) and fit for it; ``None`` when the
        design did not depend on the index (SPEX, ProxySPEX, every mask evaluated, a spectrum
        built by hand).
        """
        infos = self.info.get("decoder_info")
        for about in infos if isinstance(infos, list) else [self.info]:
            if isinstance(about, dict) and about.get("method") != "exhaustive":
                family = about.get("family")
                if family in ("shapley", "banzhaf"):
                    return str(family)
        return None

    def _check_design(self, index: str) -> None:
        """Warns once when ``index`` belongs to the other family than the result's design."""
        if self._warned_design:
            return
        family = self.design_family()
        if family is None:
            return
        from torchspex.decoders.regression import index_family

        wanted = index_family(canonical_index(index))
        if wanted == family:
            return
        self._warned_design = True
        name = canonical_index(index)
        warnings.warn(
            f"reading {name} from a result fitted for index={self.index!r} (the {family} "
            f"design); {name} belongs to the {wanted} family, so its values may be less accurate "
            f"than those of a fit made for it: pass index={name!r} (or another {wanted}-family "
            "index) to attribute() / explain(), for the same number of model calls.",
            stacklevel=3,
        )

    def first_order(self, index: str = "SV") -> Tensor:
        """First-order values in ``index`` as a dense tensor ``[*out, n_features]``.

        The index is read at order 1 (``to_index(index, 1)``): for an index that its order
        defines (FSII, STII, k-SII, kADD-SHAP, FBII) these are not the singletons of the
        result's own order-``k`` view, ``result[(i,)]`` (FSII, STII, k-SII and kADD-SHAP at
        order 1 are the Shapley values, FBII's the Banzhaf values). Warns once when ``index``
        is of the other family than the design the result was fitted for (see
        :meth:`design_family`).
        """
        self._check_design(index)
        view = fourier_to_index(self.spectrum, index, 1)
        dense = torch.zeros((self.n_features, *self.out_shape), dtype=view.coefficients.dtype)
        single = view.orders == 1
        if bool(single.any()):  # a constant function has index width 0
            dense[view.indices[single, 0]] = view.coefficients[single]
        return dense.movedim(0, -1)

    def to_dict(self) -> dict[tuple[Hashable, ...], float | list]:
        """``{tuple of feature ids: value}``; ``()`` holds the index's empty-set value."""
        vals = self.values
        return {
            tuple(self.feature_ids[i] for i in s): v
            for s, v in zip(vals.sets(), vals.coefficients.tolist())
        }

    # ------------------------------------------------------------------ surrogate
    def predict(self, masks: Tensor) -> Tensor:
        """The learned surrogate on masks ``bool [m, n]`` -> ``[m, *out]``."""
        return self.spectrum.evaluate(torch.as_tensor(masks))

    def r2(self, masks: Tensor, values: Tensor) -> float | Tensor:
        """Coefficient of determination of the surrogate on ``(masks, values)``, per output
        (``nan`` for an output whose values are all equal: R^2 is undefined there)."""
        values = torch.as_tensor(values, dtype=self.spectrum.coefficients.dtype)
        pred = self.predict(masks)
        if values.shape != pred.shape:
            raise ValueError(
                f"`values` must have shape {tuple(pred.shape)}; got {tuple(values.shape)}."
            )
        ss_res = ((values - pred) ** 2).sum(dim=0)
        ss_tot = ((values - values.mean(dim=0)) ** 2).sum(dim=0)
        r2 = 1 - ss_res / ss_tot.clamp(min=torch.finfo(ss_tot.dtype).tiny)
        return self._scalar(torch.where(ss_tot > 0, r2, torch.nan))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Writes the result (spectrum and metadata) to ``path``; ``load`` restores it exactly."""
        torch.save(
            {
                "format_version": _FORMAT_VERSION,
                "indices": self.spectrum.indices,
                "coefficients": self.spectrum.coefficients,
                "n_features": self.n_features,
                "index": self.index,
                "max_order": self.max_order,
                "n_evaluations": self.n_evaluations,
                "feature_names": self.feature_names,
                "feature_ids": list(self.feature_ids),
                "method": self.method,
                "info": self.info,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Interactions:
        """Reads a result written by :meth:`save`."""
        state = torch.load(path, weights_only=False)
        if state.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{path!s} is not a torchspex Interactions file.")
        spec = SparseSpectrum(state["indices"], state["coefficients"], state["n_features"])
        return cls(
            spec,
            state["index"],
            state["max_order"],
            state["n_evaluations"],
            state["feature_names"],
            state["feature_ids"],
            state["method"],
            state["info"],
        )

    # ------------------------------------------------------------------ optimize, interop, plots
    def optimize(
        self,
        maximize: bool = True,
        n_kept: int | None = None,
        max_kept: int | None = None,
        min_kept: int | None = None,
        fixed: dict[Hashable, bool] | None = None,
        value_function: Any = None,
        **options: Any,
    ) -> Any:
        """The mask that maximizes (or minimizes) the learned surrogate; see
        :func:`torchspex.optimize.optimize`. ``fixed`` is keyed by feature ids."""
        from torchspex.optimize import optimize

        positions = None
        if fixed is not None:
            positions = {self._key((f,))[0]: kept for f, kept in dict(fixed).items()}
        return optimize(
            self.spectrum, maximize, n_kept, max_kept, min_kept, positions, value_function,
            feature_ids=self.feature_ids, **options,
        )

    def to_shapiq(self, index: str | None = None, max_order: int | None = None) -> Any:
        """A ``shapiq.InteractionValues``; see :func:`torchspex.interop.to_shapiq`."""
        return _formats.to_shapiq(self, index, max_order)

    @classmethod
    def from_shapiq(cls, iv: Any, feature_names: Sequence[str] | None = None) -> Interactions:
        """A result reproducing a ``shapiq.InteractionValues``; see
        :func:`torchspex.interop.from_shapiq`."""
        fields = _formats.shapiq_fields(iv)
        return Interactions(**fields, feature_names=feature_names, method="shapiq")

    def to_shap(self, index: str = "SV", data: Any = None) -> Any:
        """First-order values as a ``shap.Explanation``; see :func:`torchspex.interop.to_shap`."""
        return _formats.to_shap(self, index, data)

    def plot(self, kind: str = "bar", **kwargs: Any) -> Any:
        """Draws the result: ``kind`` is ``"bar"`` (:func:`torchspex.viz.plot_top_k`),
        ``"heatmap"`` (:func:`~torchspex.viz.plot_heatmap`), ``"text"``
        (:func:`~torchspex.viz.plot_text`) or ``"image"`` (:func:`~torchspex.viz.plot_image`).
        Returns ``(fig, ax)``."""
        kinds: dict[str, Callable[..., Any]] = {
            "bar": viz.plot_top_k, "heatmap": viz.plot_heatmap, "text": viz.plot_text,
            "image": viz.plot_image,
        }  # fmt: skip
        if kind not in kinds:
            raise ValueError(f"`kind` must be one of {tuple(kinds)}; got {kind!r}.")
        return kinds[kind](self, **kwargs)

    def save_html(self, path: str | os.PathLike, **kwargs: Any) -> str:
        """Writes a self-contained HTML page of the result (no external resources): the
        summary table and, with ``text=True`` or ``words=...``, the words coloured by value
        with pair arcs. Options as :func:`torchspex.viz.to_html`; returns the path."""
        return viz.save_html(self, path, **kwargs)

    def _repr_html_(self) -> str:
        """What a notebook shows: :func:`torchspex.viz.summary_html` (facts and the top 10)."""
        return viz.summary_html(self)

    # ------------------------------------------------------------------ display
    def __len__(self) -> int:
        return self.values.n_terms

    def __repr__(self) -> str:
        return (
            f"Interactions(index={self.index!r}, max_order={self.max_order}, "
            f"n_features={self.n_features}, n_terms={len(self)}, "
            f"n_evaluations={self.n_evaluations}, method={self.method!r})"
        )

    def __str__(self) -> str:
        base = self.baseline_value
        base_txt = f"{base:.6g}" if isinstance(base, float) else f"tensor{tuple(base.shape)}"
        lines = [
            f"Interactions(index={self.index}, max_order={self.max_order}, "
            f"baseline_value={base_txt}, n_evaluations={self.n_evaluations}, "
            f"n_features={self.n_features}, method={self.method or '-'})",
            "Top interactions:",
        ]
        for ids, value in self.top_k(10):
            names = ", ".join(self.feature_names[self._position[i]] for i in ids)
            val = f"{value:+.6g}" if isinstance(value, float) else str(value.tolist())
            lines.append(f"  ({names}): {val}")
        return "\n".join(lines)
