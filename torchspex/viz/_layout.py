"""Where the words and pair arcs of a text view go, in character units (no drawing here).

One unit is the advance of one monospace character; both axes use the same unit, so the layout
can be scaled to points (matplotlib) or pixels (SVG) by one factor.

An arc is only ever drawn between two words of the same line, above that line: the words of a
pair (and of pairs that overlap it) are kept together on one line while they fit in
``line_width`` characters (:func:`keep_together`). A pair that does not fit, its words too far
apart, is not an arc: both its words are tagged with the pair's number under their boxes, and
the views list those pairs. So no arc ever runs through or behind another line of words.
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
#: Space between a line's boxes and the next line's arcs or boxes (units).
LINE_GAP = 1.2
#: Room under a line's boxes for the number tags of far pairs (units), when there are any.
TAG_ROOM = 1.8
#: Least share of the line width a line (but the last) keeps when words are kept together.
MIN_FILL = 0.6
#: Monospace advance in em (DejaVu Sans Mono and most others: 0.6).
CHAR_EM = 0.6


@dataclass
class TextLayout:
    """Word boxes and arcs of a text view; y grows upwards, the first line on top.

    Attributes:
        centres: ``float [n, 2]`` centre of each word's box.
        widths: ``float [n]`` width of each word's box (padding included).
        line_of: ``int [n]`` line of each word.
        drawn: ``bool [p]`` which pairs are arcs (both words on one line); the others are
            tagged under their words.
        arcs: one ``float [4, 2]`` cubic Bezier control polygon per drawn pair (in the order of
            the pairs), from box top to box top, above the line.
        tags: ``[(word, text)]`` the number tags to write under word boxes: the 1-based ranks
            of the pairs that are not arcs, comma-separated.
        runs: ``[(first, last)]`` the runs of words kept on one line (:func:`keep_together`).
        width: extent of the layout in x (from 0).
        bottom: lowest y of any box or tag; the top of the layout is ``top``.
        top: highest y of any arc or box.
        tag_room: room under every line for the tags (0 when there are none).
    """

    centres: np.ndarray
    widths: np.ndarray
    line_of: np.ndarray
    drawn: np.ndarray
    arcs: list[np.ndarray]
    tags: list[tuple[int, str]]
    runs: list[tuple[int, int]]
    width: float
    bottom: float
    top: float
    tag_room: float = 0.0

    @property
    def height(self) -> float:
        """Extent of the layout in y."""
        return self.top - self.bottom

    @property
    def n_lines(self) -> int:
        """Number of lines of words."""
        return int(self.line_of.max()) + 1 if self.line_of.size else 0


def _arc_height(dx: float) -> float:
    return min(1.0 + 0.15 * abs(dx), MAX_ARC)


def _runs(n: int, groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every word in exactly one run: the groups, and a run of one for each other word."""
    starts = {g[0]: g for g in groups}
    runs, i = [], 0
    while i < n:
        run = starts.get(i, (i, i))
        runs.append(run)
        i = run[1] + 1
    return runs


def _wrap(sizes: Sequence[int], runs: list[tuple[int, int]], line_width: float) -> list[int]:
    """The line of each run, and the characters of each line, breaking only between runs."""
    line, column, lines = 0, 0, []
    for lo, hi in runs:
        chars = sum(sizes[i] + 1 for i in range(lo, hi + 1))
        if column and column + chars > line_width:
            line, column = line + 1, 0
        lines.append(line)
        column += chars
    return lines


def _shortest_line(sizes: Sequence[int], runs: list[tuple[int, int]], line_width: float) -> float:
    """Characters on the shortest line but the last one (``inf`` for one line)."""
    lines = _wrap(sizes, runs, line_width)
    used = np.zeros(lines[-1] + 1 if lines else 1)
    for (lo, hi), line in zip(runs, lines):
        used[line] += sum(sizes[i] + 1 for i in range(lo, hi + 1))
    return float(used[:-1].min()) - 1 if len(used) > 1 else float("inf")


def keep_together(
    words: Sequence[str], pairs: np.ndarray, max_chars: float,
    line_width: float | None = None, min_fill: float = MIN_FILL,
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The runs of words to keep on one line so that pairs can be arcs, strongest pair first.

    Each pair's span (its two words and those between) is joined with the runs it overlaps;
    the pair becomes an arc when the joined run is at most ``max_chars`` characters long
    (words plus one space between neighbours) and, when ``line_width`` is given, the text
    still wraps into full lines: no line but the last shorter than ``min_fill * line_width``
    characters (unless one already was). Otherwise the pair is left out and the runs stay.

    Args:
        words: the words, in reading order.
        pairs: ``int [p, 2]`` word positions, strongest first.
        max_chars: the longest run (characters).
        line_width: the width the text wraps at (``None``: unknown, e.g. a browser's page).
        min_fill: least share of ``line_width`` a line but the last keeps.

    Returns:
        ``(runs, drawn)``: the runs as sorted, disjoint ``(first, last)`` word positions (every
        word in exactly one run; a lone word is a run of one), and ``bool [p]``, which pairs
        are arcs.
    """
    n = len(words)
    sizes = [max(len(w), 1) for w in words]
    ends = np.concatenate([[0], np.cumsum([size + 1 for size in sizes])])
    groups: list[tuple[int, int]] = []
    flat = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    drawn = np.zeros(len(flat), dtype=bool)
    shortest = (float("inf") if line_width is None
                else _shortest_line(sizes, _runs(n, groups), line_width))
    for p, (a, b) in enumerate(flat.tolist()):
        lo, hi = min(a, b), max(a, b)
        if lo == hi:
            continue
        touched = [g for g in groups if g[0] <= hi and g[1] >= lo]
        lo = min([lo, *(g[0] for g in touched)])
        hi = max([hi, *(g[1] for g in touched)])
        if ends[hi + 1] - ends[lo] - 1 > max_chars:
            continue
        joined = [g for g in groups if g not in touched] + [(lo, hi)]
        if line_width is not None:
            short = _shortest_line(sizes, _runs(n, joined), line_width)
            if short < min(shortest, min_fill * line_width):
                continue
            shortest = short
        groups = joined
        drawn[p] = True
    return _runs(n, groups), drawn


def layout_text(
    words: Sequence[str], pairs: np.ndarray, line_width: float,
    max_run: float | None = None,
) -> TextLayout:
    """Places the words (wrapping after ``line_width`` characters) and the arcs of ``pairs``.

    Args:
        words: the words, in reading order.
        pairs: ``int [p, 2]`` word positions, strongest first; each is an arc when its words
            can be kept on one line (:func:`keep_together`), else its rank is tagged under both
            words.
        line_width: characters per line before wrapping (a longer word or run gets a line of
            its own).
        max_run: longest run of words kept together for arcs. Default: ``line_width``, and a
            pair is only kept together when the lines stay full (:data:`MIN_FILL`); given, for
            text that a browser wraps at a width not known here, runs are only capped.

    Returns:
        The :class:`TextLayout`.
    """
    n = len(words)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    runs, drawn = keep_together(words, pairs, line_width if max_run is None else max_run,
                                line_width if max_run is None else None)
    widths = np.array([max(len(w), 1) + 2 * PAD_X for w in words], dtype=np.float64)
    xs, line_of = np.zeros(n), np.zeros(n, dtype=np.int64)
    sizes = [max(len(w), 1) for w in words]
    line, x = -1, 0.0
    for (lo, hi), run_line in zip(runs, _wrap(sizes, runs, line_width)):
        if run_line != line:
            line, x = run_line, 0.0
        for i in range(lo, hi + 1):
            xs[i] = x + widths[i] / 2.0
            line_of[i] = line
            x += widths[i] + GAP
    line = max(line, 0)
    n_lines = line + 1 if n else 0
    # headroom each line needs for its arcs
    room = np.zeros(max(n_lines, 1))
    for a, b in pairs[drawn].tolist():
        room[line_of[a]] = max(room[line_of[a]], _arc_height(xs[b] - xs[a]))
    tagged: dict[int, list[str]] = {}
    for rank, (a, b) in enumerate(pairs.tolist(), start=1):
        if not drawn[rank - 1]:
            for i in sorted({a, b}):
                tagged.setdefault(i, []).append(str(rank))
    tag_room = TAG_ROOM if tagged else 0.0
    # line centres, top to bottom
    ys = np.zeros(max(n_lines, 1))
    y = -(room[0] + HALF_HEIGHT)
    for k in range(n_lines):
        if k:
            y -= HALF_HEIGHT + tag_room + LINE_GAP + room[k] + HALF_HEIGHT
        ys[k] = y
    centres = np.stack([xs, ys[line_of]], axis=1) if n else np.zeros((0, 2))
    arcs = []
    for a, b in pairs[drawn].tolist():
        a, b = min(a, b), max(a, b)
        lift = _arc_height(xs[b] - xs[a]) * 4.0 / 3.0  # a cubic with both controls at 4/3 h
        (xa, ya), (xb, yb) = centres[a], centres[b]  # peaks at h
        ta, tb = ya + HALF_HEIGHT, yb + HALF_HEIGHT
        inset = 0.15 * (xb - xa)
        arcs.append(np.array([[xa, ta], [xa + inset, ta + lift], [xb - inset, tb + lift],
                              [xb, tb]]))
    right = float((xs + widths / 2.0).max()) if n else 1.0
    bottom = float(ys[-1] - HALF_HEIGHT - tag_room) if n else -2 * HALF_HEIGHT
    tags = [(i, ",".join(ranks)) for i, ranks in sorted(tagged.items())]
    return TextLayout(centres, widths, line_of, drawn, arcs, tags, runs, right, bottom, 0.0,
                      tag_room)


def far_pairs_note(
    pairs: np.ndarray, values: np.ndarray, drawn: np.ndarray, named: Sequence[str],
) -> list[str]:
    """``"3: table × waiter +0.12"`` for each pair that is not an arc (its rank, names, value)."""
    return [f"{rank}: {named[i]} \u00d7 {named[j]} {value:+.3g}"
            for rank, ((i, j), value, arc) in enumerate(
                zip(pairs.tolist(), values.tolist(), drawn.tolist()), start=1) if not arc]


@dataclass
class TextView:
    """What a text view shows, checked and laid out (:func:`text_view`).

    Attributes:
        shown: the result in the view's index and order cap.
        words: the words, as strings.
        first: ``float64 [n]`` order-1 value of each word.
        pairs: ``int64 [p, 2]`` the pairs shown (as arcs or tags), strongest first.
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
    max_order: int | None, n_pairs: int, line_width: int, page: bool = False,
) -> TextView:
    """The shared first steps of :func:`~torchspex.viz.plot_text` and
    :func:`~torchspex.viz.text_html`: check the arguments, take the view, read its first-order
    values and its ``n_pairs`` strongest pairs, lay the words out (``page``: for a browser that
    wraps the runs of words itself; ``line_width`` only caps the runs)."""
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
    layout = layout_text(strings, pairs, line_width, max_run=line_width if page else None)
    return TextView(shown, strings, first, pairs, values, layout)
