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

    Each bar is labelled with its value, and a caption under the axes says what the bars
    leave out (:func:`top_k_caption`): the sum of the bars, ``f(all kept) - f(all removed)``,
    and, for an index whose terms add up to it (Moebius, FSII, k-SII, STII, SV, ...), how much
    of it is in the terms not drawn, and how many they are.

    Args:
        result: a result with scalar values (``result.select(i)`` for one output).
        k: how many interactions to show.
        index: interaction index to show (default: the result's).
        max_order: order cap of that view (default: the result's).
        order: show only interactions of exactly this order.
        ax: matplotlib axes to draw on (default: a new figure).

    Returns:
        ``(fig, ax)``. Bars are labelled ``"name1 x name2"`` by feature name, strongest on top;
        the caption is ``ax.texts[-1]``.
    """
    scalar_result(result, "result")
    shown = view(result, index, max_order)
    top = shown.top_k(k, order=order)
    plt = pyplot()
    caption = top_k_caption(shown, top)
    fig, ax = figure_axes(ax, (7.0, 0.45 * max(len(top), 1) + 1.5 + 0.2 * caption.count("\n")))
    names = dict(zip(shown.feature_ids, display_names(shown)))
    labels = [" \u00d7 ".join(names[f] for f in ids) for ids, _ in top]
    values = np.array([float(v) for _, v in top])
    orders = [len(ids) for ids, _ in top]
    colours = plt.get_cmap("tab10")
    ypos = np.arange(len(top))[::-1]
    bars = ax.barh(ypos, values, color=[colours((o - 1) % 10) for o in orders])
    ax.bar_label(bars, [short_number(v) for v in values], padding=3, fontsize=8)
    low, high = min(0.0, *values, 0.0), max(0.0, *values, 0.0)
    span = (high - low) or 1.0  # room for the value labels at both ends
    ax.set_xlim(low - (0.16 * span if low < 0 else 0.02 * span),
                high + (0.16 * span if high > 0 else 0.02 * span))
    ax.set_yticks(ypos, labels)
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel(f"{shown.index} value")
    # the title on the left and the legend above the axes on the right, in one row: inside the
    # axes a legend covered the value label of a bar at its corner
    ax.set_title(f"Top {len(top)} interactions ({shown.index})", loc="left")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=colours((o - 1) % 10)) for o in sorted(set(orders))
    ]
    if handles:
        ax.legend(handles, [f"order {o}" for o in sorted(set(orders))], loc="lower right",
                  bbox_to_anchor=(1.0, 1.0), ncol=len(handles), fontsize=8, frameon=False,
                  borderaxespad=0.3, handlelength=1.2, columnspacing=1.0)
    add_caption(ax, caption)
    fig.tight_layout()
    return fig, ax


def short_number(value: float) -> str:
    """A signed value with three significant digits, without an exponent below 10^6."""
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e6:
        digits = max(0, 2 - int(np.floor(np.log10(abs(value)))))
        text = f"{value:+,.{digits}f}"
    else:
        text = f"{value:+.2e}"
    return text.replace("-", "\u2212")  # the minus sign of matplotlib's tick labels


def top_k_caption(
    result: Interactions, top: Sequence[tuple[tuple[Hashable, ...], Any]],
    kept: str = "f(all kept)", removed: str = "f(all removed)", names: Sequence[str] = (),
) -> str:
    """What the bars of ``top`` (a slice of ``result.top_k``) leave out, in two lines.

    ``"sum of bars = S; kept - removed = D"``, then, when the index's terms add up to
    ``D`` (every non-empty term of the view summed), ``"the rest, D - S, is in the N terms not
    drawn (a singles, b pairs)"``; else the sum of all its terms, which need not be ``D``.

    Args:
        result: the result in the view the bars show.
        top: the drawn terms, ``(feature ids, value)``.
        kept: how to name the value with every feature kept.
        removed: how to name the value with every feature removed.
        names: names of the orders 1, 2, 3 (default: single, pair, triple).
    """
    vals = result.values
    orders = vals.orders
    nonempty = orders > 0
    all_sum = float(vals.coefficients[nonempty].double().sum())
    drawn_sum = float(sum(float(v) for _, v in top))
    full, base = float(result.full_value), float(result.baseline_value)
    gap = full - base
    drawn_sets = {tuple(sorted(result._key(ids))) for ids, _ in top}
    rest = [len(s) for s in vals.sets() if s and tuple(sorted(s)) not in drawn_sets]
    kinds = list(names) or ["single", "pair", "triple"]
    counts = []
    for order in sorted(set(rest)):
        count = rest.count(order)
        name = kinds[order - 1] if order <= len(kinds) else f"order-{order} term"
        counts.append(f"{count} {name}{'s' if count != 1 else ''}")
    scale = max(abs(gap), abs(all_sum), float(vals.coefficients.abs().max()) if len(
        vals.coefficients) else 0.0, 1e-12)
    first = (f"sum of the {len(top)} bars = {short_number(drawn_sum)}; "
             f"{kept} \u2212 {removed} = {short_number(gap)}")
    if not rest:
        second = "every non-zero term is drawn"
        if abs(all_sum - gap) > 1e-6 * scale:
            second += f", and they sum to {short_number(all_sum)}, not {short_number(gap)}"
        return f"{first}\n{second}"
    if abs(all_sum - gap) <= 1e-6 * scale:
        second = (f"the rest, {short_number(gap - drawn_sum)}, is in the {len(rest)} "
                  f"term{'s' if len(rest) != 1 else ''} not drawn ({', '.join(counts)})")
    else:
        cap = "" if result.max_order is None else f" up to order {result.max_order}"
        second = (f"{len(rest)} term{'s' if len(rest) != 1 else ''} not drawn "
                  f"({', '.join(counts)}); all {len(rest) + len(top)} sum to "
                  f"{short_number(all_sum)}: {result.index}{cap} does not add up to "
                  f"{kept} \u2212 {removed}")
    return f"{first}\n{second}"


def add_caption(ax: Any, caption: str, fontsize: float = 8.5) -> Any:
    """Writes ``caption`` under the x-axis label of ``ax``, centred on the figure and wrapped
    to its width (``tight_layout`` then keeps it on the page); returns the text artist,
    ``ax.texts[-1]``."""
    import textwrap

    chars = int(ax.figure.get_figwidth() * 72.0 / (0.58 * fontsize))
    lines = [part for line in caption.split("\n") for part in textwrap.wrap(line, chars)]
    return ax.annotate("\n".join(lines), xy=(0.5, 0.0), xycoords=("figure fraction",
                       ax.xaxis.label), xytext=(0, -5), textcoords="offset points",
                       ha="center", va="top", fontsize=fontsize, color="0.15",
                       linespacing=1.35)


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
    the right, on their own scale, each cell printed with its value. When not every feature
    is shown, the title says so ("top 20 of 30 features by ..."), and how many pairs involve
    the features left out.

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
    if shown.max_order is not None and shown.max_order < 2:
        raise ValueError(
            f"the heatmap shows pairs, so the view's max_order must be at least 2 (or None); "
            f"got {shown.index} with max_order={shown.max_order}: pass max_order=2, or use "
            "plot_top_k for first-order values."
        )
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
    outside = int((~inside).sum()) if len(pairs) else 0
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
    ax.set_title(heatmap_title(shown.index, k, n, features is None, outside, len(pairs)),
                 fontsize=10)
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


def heatmap_title(index: str, k: int, n: int, by_weight: bool, outside: int, n_pairs: int) -> str:
    """The heatmap's title: what it shows, and which features when not all of them."""
    title = f"Pairwise interactions ({index}); single features in their own column"
    if k == n:
        return title
    which = (f"top {k} of {n} features by |single value| + \u03a3 |pair values|" if by_weight
             else f"{k} of {n} features, as chosen")
    left = (f"; {outside} of {n_pairs} non-zero pairs involve features not shown"
            if outside else "")
    return f"{title}\n{which}{left}"


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
