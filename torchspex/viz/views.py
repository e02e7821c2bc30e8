"""Interactions drawn on the input: words with arcs, image patches with links."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from torchspex.viz._common import (
    CMAP,
    as_numpy,
    disambiguate,
    figure_axes,
    first_order_values,
    pair_values,
    pyplot,
    scalar_result,
    symmetric_limit,
    view,
)

if TYPE_CHECKING:
    from torchspex.interactions import Interactions

__all__ = ["feature_positions", "image_hwc", "plot_image", "plot_text"]


def _pair_style(values: np.ndarray, limit: float) -> tuple[list[str], np.ndarray]:
    colours = ["#b2182b" if v > 0 else "#2166ac" for v in values]
    widths = 1.0 + 4.0 * np.abs(values) / limit
    return colours, widths


#: Font size of the words (points) in a figure ``plot_text`` makes itself.
_TEXT_FONT = 11.0
#: Units reserved under the words for the colour bar and its labels.
_BAR_ROOM = 6.5
#: Font size of the list of far pairs (points).
_NOTE_FONT = 8.0


def plot_text(
    result: Interactions,
    words: Sequence[str] | None = None,
    index: str | None = None,
    max_order: int | None = None,
    n_pairs: int = 5,
    line_width: int = 60,
    ax: Any = None,
) -> tuple[Any, Any]:
    """Words coloured by their first-order value, the strongest pairs drawn as arcs.

    Both come from the same view (``index``, ``max_order``): order-1 values colour the words
    (red positive, blue negative), and the ``n_pairs`` largest order-2 values in magnitude are
    arcs between the words (red positive, blue negative, wider when stronger). Words wrap after
    ``line_width`` characters and never overlap; the words of a pair are kept on one line
    when they fit, so every arc joins two words of one line and stays above it (each line gets
    the headroom its arcs need). A pair whose words are farther apart than a line is not drawn
    as an arc: its rank is written under both words and the pair is listed under the colour
    bar. A new figure is sized to the text at an 11 pt font; on a given ``ax`` the font shrinks
    until the text fits.

    Args:
        result: a result with one feature per word, scalar values.
        words: the words to show (default: the feature names).
        index: interaction index (default: the result's).
        max_order: order cap of the view (default: the result's).
        n_pairs: how many pair arcs to draw.
        line_width: characters per line before wrapping.
        ax: matplotlib axes to draw on.

    Returns:
        ``(fig, ax)``; the words are the axes' text artists, in order, the arcs its patches;
        the rank tags of the far pairs, then their list, are ``ax.artists`` (annotation boxes:
        ``.offsetbox.get_text()``).
    """
    import textwrap

    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    from torchspex.viz._layout import CHAR_EM, HALF_HEIGHT, far_pairs_note, text_view

    text = text_view(result, words, index, max_order, n_pairs, line_width)
    shown, lay, words, first, values = text.shown, text.layout, text.words, text.first, text.values
    margin = 1.0
    x0, x1 = -margin, lay.width + margin
    far = far_pairs_note(text.pairs, values, lay.drawn, disambiguate(words))
    note: list[str] = []
    if far:  # the far pairs, wrapped to the width of the text at the note's font
        chars = max(int((x1 - x0) * _TEXT_FONT / _NOTE_FONT), 30)
        note = textwrap.wrap("not arcs (words on different lines; rank under both words): "
                             + "; ".join(far), chars)
    note_room = len(note) * _NOTE_FONT * 1.25 / (_TEXT_FONT * CHAR_EM)
    y0, y1 = lay.bottom - _BAR_ROOM - note_room, lay.top + 0.5
    plt = pyplot()
    unit_in = _TEXT_FONT * CHAR_EM / 72.0  # inches per unit at the default font
    if ax is None:
        side, top_in, bottom_in = 0.25, 0.55, 0.1
        fig_w = max((x1 - x0) * unit_in + 2 * side, 4.0)
        fig_h = max((y1 - y0) * unit_in + top_in + bottom_in, 1.8)
        fig = plt.figure(figsize=(fig_w, fig_h))
        ax = fig.add_axes((side / fig_w, bottom_in / fig_h, 1 - 2 * side / fig_w,
                           1 - (top_in + bottom_in) / fig_h))
    fig = ax.figure
    box = ax.get_position()
    ax_w, ax_h = box.width * fig.get_figwidth(), box.height * fig.get_figheight()
    scale = min(ax_w / (x1 - x0), ax_h / (y1 - y0))  # inches per unit, same on both axes
    fontsize = min(_TEXT_FONT, scale * 72.0 / CHAR_EM)
    scale = fontsize * CHAR_EM / 72.0
    # fill the axes with the same scale on x and y, the text centred
    half_w, half_h = ax_w / scale / 2.0, ax_h / scale / 2.0
    cx, cy = (x0 + x1) / 2.0, y1 - half_h  # keep the top (arcs) anchored under the title
    ax.set_xlim(cx - half_w, cx + half_w)
    ax.set_ylim(cy - half_h, cy + half_h)
    limit = symmetric_limit(first)
    cmap, norm = plt.get_cmap(CMAP), plt.Normalize(-limit, limit)
    for (x, y), word, value in zip(lay.centres, words, first):
        face = cmap(norm(value))
        dark = 0.299 * face[0] + 0.587 * face[1] + 0.114 * face[2] < 0.5  # white text on dark
        ax.text(x, y, word, ha="center", va="center", family="monospace", fontsize=fontsize,
                color="white" if dark else "black", zorder=3,
                bbox={"facecolor": face, "edgecolor": "0.75", "linewidth": 0.5,
                      "boxstyle": "round,pad=0.3"})
    colours, widths = _pair_style(values, symmetric_limit(values))
    codes = [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4]
    drawn = [k for k, arc in enumerate(lay.drawn.tolist()) if arc]
    for arc, colour, width in zip(lay.arcs, [colours[k] for k in drawn], widths[drawn]):
        ax.add_patch(PathPatch(Path(arc, codes), facecolor="none", edgecolor=colour,
                               linewidth=(0.4 + 0.6 * width) * fontsize / _TEXT_FONT,
                               alpha=0.8, zorder=2,
                               capstyle="round"))
    for i, tag in lay.tags:  # the ranks of the far pairs under their words
        _label(ax, (lay.centres[i, 0], lay.centres[i, 1] - HALF_HEIGHT - 0.25), tag,
               fontsize=fontsize * 0.75, color="0.2", fontweight="bold")
    if note:
        _label(ax, (lay.width / 2.0, lay.bottom - _BAR_ROOM + 0.3), "\n".join(note),
               fontsize=_NOTE_FONT * fontsize / _TEXT_FONT, color="0.2", linespacing=1.25,
               multialignment="center")
    ax.axis("off")
    ax.set_title(f"First-order values and top {len(values)} pairs ({shown.index})")
    # colour bar inside the reserved strip under the words
    ylo = ax.get_ylim()[0]
    bar_y = (lay.bottom - 2.6 - ylo) / (2 * half_h)
    bar_h = 1.0 / (2 * half_h)
    bar_w = min(0.6, 40.0 / (2 * half_w))
    cax = ax.inset_axes((0.5 - bar_w / 2, bar_y, bar_w, bar_h))
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax,
                       orientation="horizontal")
    bar.ax.tick_params(labelsize=min(8.0, fontsize))
    bar.set_label(f"word value ({shown.index}); arcs: pairs, red +, blue \u2212",
                  fontsize=min(8.0, fontsize), labelpad=1)
    return fig, ax


def _label(ax: Any, xy: tuple[float, float], text: str, **props: Any) -> Any:
    """``text`` centred under ``xy`` (data units) as an ``AnnotationBbox`` in ``ax.artists``,
    so that ``ax.texts`` stays the words."""
    from matplotlib.offsetbox import AnnotationBbox, TextArea

    box = AnnotationBbox(TextArea(text, textprops=props), xy, box_alignment=(0.5, 1.0),
                         frameon=False, pad=0.0, zorder=3)
    ax.add_artist(box)
    return box


def image_hwc(image: Tensor | np.ndarray) -> np.ndarray:
    """An image as float ``[H, W, C]`` (or ``[H, W]``) in ``[0, 1]`` for display.

    Torch tensors are read as ``[C, H, W]`` or ``[1, C, H, W]`` (PyTorch's layout), NumPy arrays
    as ``[H, W, C]``; 2-D inputs are grey images. Values outside ``[0, 1]`` are rescaled (integer
    images by 255, others by their range).
    """
    is_torch = isinstance(image, Tensor)
    arr = as_numpy(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and is_torch:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(
            "`image` must be [C, H, W] / [1, C, H, W] (torch), [H, W, C] (numpy) or [H, W]; "
            f"got shape {tuple(np.shape(image))}."
        )
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float64) / 255.0
    arr = arr.astype(np.float64)
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        arr = (arr - low) / (high - low if high > low else 1.0)
    return arr


def feature_positions(result: Interactions, feature_mask: Tensor | np.ndarray) -> np.ndarray:
    """Each pixel's feature position in ``result`` (``int64``, same shape as the mask).

    ``feature_mask`` holds the feature ids the result is keyed by (e.g. patch ids).

    Raises:
        ValueError: when the mask holds ids the result does not know.
    """
    ids = as_numpy(feature_mask)
    unique, inverse = np.unique(ids, return_inverse=True)
    lookup = {fid: i for i, fid in enumerate(result.feature_ids)}
    pos = np.array([lookup.get(u.item(), -1) for u in unique], dtype=np.int64)
    if (pos < 0).any():
        missing = unique[pos < 0][:5].tolist()
        raise ValueError(
            f"`feature_mask` holds ids {missing} that are not feature ids of the result "
            f"({result.n_features} features); pass the feature mask the result was computed with."
        )
    return pos[inverse.reshape(ids.shape)]


def _spatial_mask(feature_mask: Tensor | np.ndarray) -> np.ndarray:
    mask = as_numpy(feature_mask)
    while mask.ndim > 2:  # [1, C, H, W] / [C, H, W]: the first channel's map
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"`feature_mask` must have at least 2 dims [H, W]; got {mask.shape}.")
    return mask


def plot_image(
    result: Interactions,
    image: Tensor | np.ndarray,
    feature_mask: Tensor | np.ndarray,
    index: str | None = None,
    max_order: int | None = None,
    n_pairs: int = 5,
    alpha: float = 0.55,
    ax: Any = None,
) -> tuple[Any, Any]:
    """Patch first-order values as a heatmap over the image, strongest patch pairs as links.

    Args:
        result: a result over image patches (feature ids = the ids in ``feature_mask``).
        image: ``[C, H, W]`` / ``[1, C, H, W]`` tensor, or ``[H, W, C]`` / ``[H, W]`` array.
        feature_mask: patch ids ``[H, W]`` (leading size-1 or channel dims are allowed; the
            first channel is drawn), as passed to ``attribute``.
        index: interaction index (default: the result's).
        max_order: order cap of the view (default: the result's).
        n_pairs: how many of the largest order-2 values to draw between patch centres.
        alpha: opacity of the heatmap.
        ax: matplotlib axes to draw on.

    Returns:
        ``(fig, ax)``; the patches of the drawn pairs are labelled with their feature names.
    """
    scalar_result(result, "result")
    shown = view(result, index, max_order)
    picture = image_hwc(image)
    mask = _spatial_mask(feature_mask)
    if mask.shape != picture.shape[:2]:
        raise ValueError(
            f"`feature_mask` covers {mask.shape} pixels but `image` is {picture.shape[:2]}."
        )
    pos = feature_positions(shown, mask)
    first = first_order_values(shown)
    pairs, values = pair_values(shown)
    pairs, values = pairs[:n_pairs], values[:n_pairs]
    limit = symmetric_limit(first)
    own_figure = ax is None
    # the figure follows the image's shape (a square one left a wide image between empty bands,
    # under a colorbar twice its height)
    height, width = mask.shape
    fig, ax = figure_axes(ax, (6.0, min(8.0, max(2.5, 5.0 * height / width + 0.9))))
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0.0, vmax=1.0)
    heat = ax.imshow(first[pos], cmap=CMAP, vmin=-limit, vmax=limit, alpha=alpha)
    rows, cols = np.indices(mask.shape)
    count = np.bincount(pos.ravel(), minlength=shown.n_features).astype(np.float64)
    safe = np.maximum(count, 1.0)
    cy = np.bincount(pos.ravel(), rows.ravel(), shown.n_features) / safe
    cx = np.bincount(pos.ravel(), cols.ravel(), shown.n_features) / safe
    colours, widths = _pair_style(values, symmetric_limit(values))
    from matplotlib import patheffects

    for (i, j), colour, width in zip(pairs.tolist(), colours, widths):
        halo = [patheffects.withStroke(linewidth=width + 2.5, foreground="white")]
        ax.plot([cx[i], cx[j]], [cy[i], cy[j]], color=colour, linewidth=width, alpha=0.95,
                marker="o", markersize=4, path_effects=halo)  # a white edge: visible on red/blue
    for i in sorted(set(pairs.ravel().tolist())):
        if count[i]:
            ax.annotate(shown.feature_names[i], (cx[i], cy[i]), xytext=(0, 5),
                        textcoords="offset points", fontsize=8, ha="center", va="bottom",
                        color="black", zorder=5,
                        bbox={"facecolor": "white", "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    ax.set_axis_off()
    ax.set_title(f"Patch values and top {len(values)} pairs ({shown.index})")
    # the colorbar in an axes appended to the image's own box: exactly as tall as the image
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cax = make_axes_locatable(ax).append_axes("right", size="4%", pad=0.1)
    fig.colorbar(heat, cax=cax).set_label(f"patch value ({shown.index})")
    if own_figure:
        fig.tight_layout()
    return fig, ax
