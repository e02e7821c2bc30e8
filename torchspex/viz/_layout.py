"""Where the words and pair arcs of a text view go, in character units (no drawing here).

One unit is the advance of one monospace character; both axes use the same unit, so the layout
can be scaled to points (matplotlib) or pixels (SVG) by one factor. Words wrap after
``line_width`` characters; every line gets exactly the headroom its arcs need, so arcs never
leave the layout box and words never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from torchspex.viz._common import first_order_values, pair_values, scalar_result, view

if TYPE_CHECKING:
    from torchspex.interactions import Interactions

#: Horizontal padding inside a word's box, each side (units).
PAD_X = 0.5
#: Half the height of a word's box (units; a 1.2 em line plus padding, 1 em = 1 / 0.6 units).
HALF_HEIGHT = 1.5
#: Blank space between neighbouring boxes (units).
GAP = 1.0
#: Highest arc between two words of one line (units above the box top).
MAX_ARC = 7.0
#: Least room above a line that an arc from an earlier line comes down into (units).
CROSS_ROOM = 2.0
#: Space between a line's boxes and the next line's arcs or boxes (units).
LINE_GAP = 1.2
#: Monospace advance in em (DejaVu Sans Mono and most others: 0.6).
CHAR_EM = 0.6


@dataclass
class TextLayout:
    """Word boxes and arcs of a text view; y grows upwards, the first line on top.

    Attributes:
        centres: ``float [n, 2]`` centre of each word's box.
        widths: ``float [n]`` width of each word's box (padding included).
        line_of: ``int [n]`` line of each word.
        arcs: one ``float [4, 2]`` cubic Bezier control polygon per pair: box top to box top
            on one line, else from the bottom of the earlier word down to the top of the later.
        width: extent of the layout in x (from 0).
        bottom: lowest y of any box; the top of the layout is ``top``.
        top: highest y of any arc or box.
    """

    centres: np.ndarray
    widths: np.ndarray
    line_of: np.ndarray
    arcs: list[np.ndarray]
    width: float
    bottom: float
    top: float

    @property
    def height(self) -> float:
        """Extent of the layout in y."""
        return self.top - self.bottom


def _arc_height(dx: float) -> float:
    return min(1.0 + 0.15 * abs(dx), MAX_ARC)


def layout_text(words: Sequence[str], pairs: np.ndarray, line_width: int) -> TextLayout:
    """Places the words (wrapping after ``line_width`` characters) and the arcs of ``pairs``.

    Args:
        words: the words, in reading order.
        pairs: ``int [p, 2]`` word positions joined by an arc.
        line_width: characters per line before wrapping (a longer word gets a line of its own).

    Returns:
        The :class:`TextLayout`.
    """
    n = len(words)
    widths = np.array([max(len(w), 1) + 2 * PAD_X for w in words], dtype=np.float64)
    xs, line_of = np.zeros(n), np.zeros(n, dtype=np.int64)
    line, column, x = 0, 0, 0.0
    for i, word in enumerate(words):
        chars = max(len(word), 1) + 1
        if column and column + chars > line_width:
            line, column, x = line + 1, 0, 0.0
        xs[i] = x + widths[i] / 2.0
        line_of[i] = line
        column += chars
        x += widths[i] + GAP
    n_lines = line + 1 if n else 0
    # headroom each line needs for the arcs that start on it
    room = np.zeros(max(n_lines, 1))
    shapes = []
    for a, b in np.asarray(pairs, dtype=np.int64).reshape(-1, 2).tolist():
        if line_of[a] == line_of[b]:
            h = _arc_height(xs[b] - xs[a])
            room[line_of[a]] = max(room[line_of[a]], h)
            shapes.append((a, b, h * 4.0 / 3.0))  # cubic with both controls at 4/3 h peaks at h
        else:
            room[line_of[b]] = max(room[line_of[b]], CROSS_ROOM)
            shapes.append((a, b, 0.0))
    # line centres, top to bottom
    ys = np.zeros(max(n_lines, 1))
    y = -(room[0] + HALF_HEIGHT)
    for k in range(n_lines):
        if k:
            y -= HALF_HEIGHT + LINE_GAP + room[k] + HALF_HEIGHT
        ys[k] = y
    centres = np.stack([xs, ys[line_of]], axis=1) if n else np.zeros((0, 2))
    arcs = []
    for a, b, lift in shapes:
        if line_of[a] > line_of[b]:
            a, b = b, a
        (xa, ya), (xb, yb) = centres[a], centres[b]
        ta, tb = ya + HALF_HEIGHT, yb + HALF_HEIGHT
        if line_of[a] == line_of[b]:
            inset = 0.15 * (xb - xa)
            arcs.append(np.array([[xa, ta], [xa + inset, ta + lift], [xb - inset, tb + lift],
                                  [xb, tb]]))
        else:  # an S from under the earlier word down into the later one
            start, mid = ya - HALF_HEIGHT, (ya - HALF_HEIGHT + tb) / 2.0
            arcs.append(np.array([[xa, start], [xa, mid], [xb, mid], [xb, tb]]))
    right = float((xs + widths / 2.0).max()) if n else 1.0
    bottom = float(ys[-1] - HALF_HEIGHT) if n else -2 * HALF_HEIGHT
    return TextLayout(centres, widths, line_of, arcs, right, bottom, 0.0)


@dataclass
class TextView:
    """What a text view shows, checked and laid out (:func:`text_view`).

    Attributes:
        shown: the result in the view's index and order cap.
        words: the words, as strings.
        first: ``float64 [n]`` order-1 value of each word.
        pairs: ``int64 [p, 2]`` the drawn pairs, strongest first.
        values: ``float64 [p]`` their values.
        layout: where the words and arcs go.
    """

    shown: Interactions
    words: list[str]
    first: np.ndarray
    pairs: np.ndarray
    values: np.ndarray
    layout: TextLayout


def text_view(
    result: Interactions, words: Sequence[object] | None, index: str | None,
    max_order: int | None, n_pairs: int, line_width: int,
) -> TextView:
    """The shared first steps of :func:`~torchspex.viz.plot_text` and
    :func:`~torchspex.viz.text_html`: check the arguments, take the view, read its first-order
    values and its ``n_pairs`` strongest pairs, lay the words out."""
    scalar_result(result, "result")
    if isinstance(line_width, bool) or not isinstance(line_width, int) or line_width < 1:
        raise ValueError(f"`line_width` must be a positive int; got {line_width!r}.")
    shown = view(result, index, max_order)
    strings = [str(w) for w in (shown.feature_names if words is None else words)]
    if len(strings) != shown.n_features:
        raise ValueError(f"`words` must have {shown.n_features} entries; got {len(strings)}.")
    first = first_order_values(shown)
    pairs, values = pair_values(shown)
    pairs, values = pairs[:n_pairs], values[:n_pairs]
    layout = layout_text(strings, pairs, line_width)
    return TextView(shown, strings, first, pairs, values, layout)
