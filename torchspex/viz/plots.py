"""Charts of a result: top-k bars, the pairwise heatmap, and layers x features sweeps."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from torchspex.viz._common import (
    CMAP,
    display_names,
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
    names = dict(zip(shown.feature_ids, display_names(shown)))
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

    Off-diagonal cells hold the order-2 values, on a colour scale set by them alone (centred at
    0), so pairs stay visible next to strong single features. The diagonal is masked (grey);
    the order-1 values of the same view (``index``, ``max_order``) are a separate column on
    the right, on their own scale, each cell printed with its value.

    Args:
        result: a result with scalar values.
        index: interaction index (default: the result's).
        max_order: order cap of the view (default: the result's; it must be at least 2 for pairs).
        features: feature ids to show (default: the ``max_features`` most involved ones).
        max_features: how many features to show when ``features`` is not given.
        ax: matplotlib axes to draw on.

    Returns:
        ``(fig, ax)``; tick labels are the feature names, ``ax.images[0]`` the pair grid (NaN
        on the diagonal). The single-feature column is the next axes of the figure.
    """
    from mpl_toolkits.axes_grid1 import make_axes_locatable

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
    k = chosen.shape[0]
    slot = np.full(n, -1)
    slot[chosen] = np.arange(k)
    grid = np.zeros((k, k))
    if len(pairs):
        inside = (slot[pairs[:, 0]] >= 0) & (slot[pairs[:, 1]] >= 0)
        a, b = slot[pairs[inside, 0]], slot[pairs[inside, 1]]
        grid[a, b] = grid[b, a] = values[inside]
    grid[np.arange(k), np.arange(k)] = np.nan
    limit = symmetric_limit(np.nan_to_num(grid))
    singles = first[chosen]
    plt = pyplot()
    texts = [f"{v:+.2g}" for v in singles]
    strip_in = 0.09 * max((len(t) for t in texts), default=3) + 0.25
    size = 0.35 * k + 2.5
    fig, ax = figure_axes(ax, (size + strip_in + 1.6, size))
    cmap = plt.get_cmap(CMAP).with_extremes(bad="0.85")
    image = ax.imshow(grid, cmap=cmap, vmin=-limit, vmax=limit)
    labels = labels_of(shown, chosen.tolist())
    ticks = np.arange(k)
    ax.set_xticks(ticks, labels, rotation=90)
    ax.set_yticks(ticks, labels)
    ax.set_title(f"Pairwise interactions ({shown.index}); diagonal: single features")
    divider = make_axes_locatable(ax)
    strip = divider.append_axes("right", size=strip_in, pad=0.1)
    single_limit = symmetric_limit(singles)
    strip.imshow(singles[:, None], cmap=CMAP, vmin=-single_limit, vmax=single_limit,
                 aspect="auto")
    fontsize = min(8.0, max(4.0, 72.0 * (size - 2.5) / max(k, 1) * 0.55))
    for row, (value, text) in enumerate(zip(singles, texts)):
        dark = abs(value) > 0.6 * single_limit
        strip.text(0, row, text, ha="center", va="center", fontsize=fontsize,
                   color="white" if dark else "black")
    strip.set_xticks([0], ["single"], rotation=90)
    strip.set_yticks([])
    cax = divider.append_axes("right", size=0.15, pad=0.15)
    fig.colorbar(image, cax=cax).set_label(f"pair value ({shown.index})")
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
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    n = grid.shape[1]
    names = display_names(results[0])
    label_room = 0.085 * max((len(name) for name in names), default=1)  # rotated tick labels
    rows_in = max(0.4 * len(results), 1.2)  # room for the colour bar's ticks too
    fig, ax = figure_axes(ax, (0.35 * n + 3.0, rows_in + label_room + 1.0))
    image = ax.imshow(grid, cmap=CMAP, vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(np.arange(n), names, rotation=90)
    ax.set_yticks(np.arange(len(results)), list(layer_names))
    ax.set_title(f"First-order values per layer ({index})")
    cax = make_axes_locatable(ax).append_axes("right", size=0.15, pad=0.15)
    fig.colorbar(image, cax=cax).set_label(f"{index} value")
    fig.tight_layout()
    return fig, ax
