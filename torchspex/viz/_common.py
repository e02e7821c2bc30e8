"""Shared helpers of the plots: lazy matplotlib, the index view, first-order and pair values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from torchspex.interactions import Interactions

#: Diverging colour map: blue for negative, red for positive values.
CMAP = "RdBu_r"


def pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            'torchspex.viz needs matplotlib: `pip install "torchspex[viz]"`.'
        ) from err
    return plt


def figure_axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """``(fig, ax)``: the given axes and their figure, or a new figure."""
    if ax is not None:
        return ax.figure, ax
    return pyplot().subplots(figsize=figsize)


def scalar_result(result: Interactions, name: str) -> None:
    """Raises unless ``result`` holds one scalar value per interaction.

    A result is recognized by the API the plots read (``spectrum``, ``out_shape``,
    ``to_index``), not by its class: ``torchspex.interactions`` imports the plots for
    ``Interactions.plot``, so the plots do not import it back.
    """
    if not all(hasattr(result, name) for name in ("spectrum", "out_shape", "to_index")):
        raise TypeError(f"`{name}` must be an Interactions result; got {type(result).__name__}.")
    if result.out_shape != ():
        raise ValueError(
            f"`{name}` has outputs of shape {result.out_shape}; plots show one output. Select "
            f"one first, e.g. `{name}.select(0)`."
        )


def view(result: Interactions, index: str | None, max_order: int | None) -> Interactions:
    """The result in ``index`` capped at ``max_order`` (``None``: the result's own setting)."""
    if index is None and max_order is None:
        return result
    return result.to_index(
        result.index if index is None else index,
        result.max_order if max_order is None else max_order,
    )


def first_order_values(result: Interactions) -> np.ndarray:
    """The order-1 values of the result's own view, dense ``float64 [n_features]``."""
    vals = result.values
    dense = torch.zeros(result.n_features, dtype=torch.float64)
    single = vals.orders == 1
    if bool(single.any()):
        dense[vals.indices[single, 0]] = vals.coefficients[single].double()
    return dense.numpy()


def pair_values(result: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Order-2 terms of the result's view: ``(pairs int64 [p, 2], values float64 [p])``,
    strongest first."""
    vals = result.values
    two = vals.orders == 2
    pairs = vals.indices[two, :2]
    values = vals.coefficients[two].double()
    order = torch.argsort(values.abs(), descending=True, stable=True)
    return pairs[order].numpy(), values[order].numpy()


def symmetric_limit(*arrays: np.ndarray) -> float:
    """``max |value|`` over the arrays (1.0 when all are zero), for a colour scale centred at 0."""
    peak = max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)
    return peak if peak > 0 else 1.0


def disambiguate(names: Sequence[object]) -> list[str]:
    """The names as strings; one that occurs more than once gets its position, ``"the [5]"``."""
    labels = [str(name) for name in names]
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [f"{label} [{i}]" if seen[label] > 1 else label for i, label in enumerate(labels)]


def display_names(result: Interactions) -> list[str]:
    """Feature names for labels, a repeated name with its position (:func:`disambiguate`)."""
    return disambiguate(result.feature_names)


def labels_of(result: Interactions, positions: Sequence[int]) -> list[str]:
    """Feature names at ``positions`` (see :func:`display_names`)."""
    names = display_names(result)
    return [names[i] for i in positions]


def as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    """A detached CPU NumPy copy."""
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
