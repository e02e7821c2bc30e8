"""Charts of a result: top-k bars, the pairwise heatmap, and layers x features sweeps."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from torchspex.viz._common import (
    CMAP,
    figure_axes,
    first_order_values,
    labels_of,
    pair_values,
    pyplot,
    scalar_result,
    symmetric_limit,
    view,
)

if TYPE_CHECKING:
    from torchspex.interactions import Interactions

__all__ = ["plot_heatmap", "plot_layers", "plot_top_k"]


def plot_top_k(
    result: Interactions,
    k: int = 10,
    index: str | None = None,
    max_order: int | None = None,
    order: int | None = None,
    ax: Any = None,
) -> tuple[Any, Any]:
    """Horizontal bars of the ``k`` strongest interactions, coloured by their order.

    Args:
        result: a result with scalar values (``result.select(i)`` for one output).
        k: how many interactions to show.
        index: interaction index to show (default: the result's).
        max_order: order cap of that view (default: the result's).
        order: show only interactions of exactly this order.
        ax: matplotlib axes to draw on (default: a new figure).

    Returns:
        ``(fig, ax)``. Bars are labelled ``"name1 x name2"`` by feature name, strongest on top.
    """
    scalar_result(result, "result")
    shown = view(result, index, max_order)
    top = shown.top_k(k, order=order)
    plt = pyplot()
    fig, ax = figure_axes(ax, (7.0, 0.45 * max(len(top), 1) + 1.2))
    names = dict(zip(shown.feature_ids, shown.feature_names))
    labels = [" \u00d7 ".join(names[f] for f in ids) for ids, _ in top]
    values = np.array([float(v) for _, v in top])
    orders = [len(ids) for ids, _ in top]
    colours = plt.get_cmap("tab10")
    ypos = np.arange(len(top))[::-1]
    ax.barh(ypos, values, color=[colours((o - 1) % 10) for o in orders])
    ax.set_yticks(ypos, labels)
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel(f"{shown.index} value")
    ax.set_title(f"Top {len(top)} interactions ({shown.index})")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=colours((o - 1) % 10)) for o in sorted(set(orders))
    ]
    if handles:
        ax.legend(handles, [f"order {o}" for o in sorted(set(orders))], loc="best", fontsize=8)
    fig.tight_layout()
    return fig, ax


def plot_heatmap(
    result: Interactions,
    index: str | None = None,
    max_order: int | None = None,
    features: Sequence[Hashable] | None = None,
    max_features: int = 20,
    ax: Any = None,
) -> tuple[Any, Any]:
    """Pairwise interactions as a symmetric ``features x features`` heatmap.

    Off-diagonal cells hold the order-2 values, the diagonal the order-1 values, both from the
    same view (``index``, ``max_order``), on one colour scale centred at 0.

    Args:
        result: a result with scalar values.
        index: interaction index (default: the result's).
        max_order: order cap of the view (default: the result's; it must be at least 2 for pairs).
        features: feature ids to show (default: the ``max_features`` most involved ones).
        max_features: how many features to show when ``features`` is not given.
        ax: matplotlib axes to draw on.

    Returns:
        ``(fig, ax)``; tick labels are the feature names.
    """
    scalar_result(result, "result")
    shown = view(result, index, max_order)
    first = first_order_values(shown)
    pairs, values = pair_values(shown)
    n = shown.n_features
    if features is None:
        weight = np.abs(first).copy()
        np.add.at(weight, pairs[:, 0], np.abs(values))
        np.add.at(weight, pairs[:, 1], np.abs(values))
        chosen = np.sort(np.argsort(-weight, kind="stable")[: min(max_features, n)])
    else:
        chosen = np.array([shown._key((f,))[0] for f in features], dtype=np.int64)
    slot = np.full(n, -1)
    slot[chosen] = np.arange(chosen.shape[0])
    grid = np.zeros((chosen.shape[0], chosen.shape[0]))
    grid[np.arange(chosen.shape[0]), np.arange(chosen.shape[0])] = first[chosen]
    inside = (slot[pairs[:, 0]] >= 0) & (slot[pairs[:, 1]] >= 0) if len(pairs) else []
    if len(pairs):
        a, b = slot[pairs[inside, 0]], slot[pairs[inside, 1]]
        grid[a, b] = grid[b, a] = values[inside]
    limit = symmetric_limit(grid)
    size = 0.35 * chosen.shape[0] + 2.5
    fig, ax = figure_axes(ax, (size + 1.0, size))
    image = ax.imshow(grid, cmap=CMAP, vmin=-limit, vmax=limit)
    labels = labels_of(shown, chosen.tolist())
    ticks = np.arange(chosen.shape[0])
    ax.set_xticks(ticks, labels, rotation=90)
    ax.set_yticks(ticks, labels)
    ax.set_title(f"Pairwise interactions ({shown.index})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig, ax


def plot_layers(
    results: Sequence[Interactions],
    layer_names: Sequence[str] | None = None,
    index: str = "SV",
    ax: Any = None,
) -> tuple[Any, Any]:
    """First-order values of a per-layer sweep as a ``layers x features`` heatmap.

    Args:
        results: one result per layer, all over the same features, scalar values.
        layer_names: row labels (default ``"layer 0"``, ``"layer 1"``, ...).
        index: first-order index of the cells (``"SV"``, ``"BV"``, or any index at order 1).
        ax: matplotlib axes to draw on.

    Returns:
        ``(fig, ax)``; columns are labelled with the first result's feature names.
    """
    results = list(results)
    if not results:
        raise ValueError("`results` must hold at least one Interactions result; got none.")
    for i, res in enumerate(results):
        scalar_result(res, f"results[{i}]")
        if res.n_features != results[0].n_features:
            raise ValueError(
                f"`results` must share their features; results[{i}] has {res.n_features}, "
                f"results[0] has {results[0].n_features}."
            )
    if layer_names is None:
        layer_names = [f"layer {i}" for i in range(len(results))]
    if len(layer_names) != len(results):
        raise ValueError(
            f"`layer_names` must have {len(results)} entries; got {len(layer_names)}."
        )
    grid = np.stack([res.first_order(index).numpy() for res in results])
    limit = symmetric_limit(grid)
    n = grid.shape[1]
    fig, ax = figure_axes(ax, (0.35 * n + 3.0, 0.35 * len(results) + 2.0))
    image = ax.imshow(grid, cmap=CMAP, vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(np.arange(n), results[0].feature_names, rotation=90)
    ax.set_yticks(np.arange(len(results)), list(layer_names))
    ax.set_title(f"First-order values per layer ({index})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig, ax
