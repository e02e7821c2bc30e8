"""HTML views of a result: a summary table, and words with pair arcs as inline SVG.

Everything is self-contained: inline CSS and SVG, generic font families, no script, no
external font, image or stylesheet, so a saved page opens offline and a notebook shows it as
is. Hovering a word or an arc shows its value (SVG ``<title>``). Nothing here needs
matplotlib.

``Interactions._repr_html_`` (what a notebook shows for a result) is :func:`summary_html`;
``Interactions.save_html(path, ...)`` writes :func:`to_html`'s page.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from torchspex.viz._common import (
    disambiguate,
    display_names,
    symmetric_limit,
    view,
)
from torchspex.viz._layout import CHAR_EM, HALF_HEIGHT, TextLayout, layout_text, text_view

if TYPE_CHECKING:
    from torchspex.interactions import Interactions

__all__ = ["HTMLView", "save_html", "summary_html", "text_html", "to_html"]

#: ColorBrewer RdBu, reversed: blue (negative) through near-white to red (positive).
_RDBU_R = ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7",
           "#f4a582", "#d6604d", "#b2182b", "#67001f")
#: Pixels per em of the text view's words.
_FONT_PX = 15.0

_CSS = """
.tsx{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:13px;
color:#222;max-width:100%}
.tsx .meta{margin:0 0 6px 0;line-height:1.5}
.tsx .meta b{font-weight:600}
.tsx table.top{border-collapse:collapse;margin:4px 0 10px 0}
.tsx table.top th,.tsx table.top td{padding:2px 10px;border-bottom:1px solid #e3e3e3;
text-align:left}
.tsx table.top td.v{text-align:right;font-family:ui-monospace,Menlo,Consolas,monospace}
.tsx table.top th{border-bottom:1px solid #999;font-weight:600}
.tsx svg text{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
.tsx svg .w:hover rect{stroke:#000;stroke-width:2}
.tsx svg .arc{stroke-opacity:.75;fill:none;stroke-linecap:round}
.tsx svg .arc:hover{stroke-opacity:1}
.tsx h2{font-size:15px;margin:14px 0 4px 0}
.tsx .words{display:flex;flex-wrap:wrap;align-items:flex-end;column-gap:5px;row-gap:6px;
margin:8px 0 6px 0}
.tsx .words svg{display:block;max-width:100%;height:auto}
.tsx svg.legend{display:block;margin:2px 0 6px 0}
.tsx table.pairs tr.far td{color:#444}
.tsx .note{color:#555;font-size:12px}
"""


def _colour(value: float, limit: float) -> str:
    """``value`` on the diverging scale ``[-limit, limit]`` as ``#rrggbb``."""
    t = (min(max(value / limit, -1.0), 1.0) + 1.0) / 2.0 * (len(_RDBU_R) - 1)
    low = min(int(t), len(_RDBU_R) - 2)
    frac = t - low
    a = [int(_RDBU_R[low][i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(_RDBU_R[low + 1][i:i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(x + (y - x) * frac) for x, y in zip(a, b)]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def _is_dark(colour: str) -> bool:
    r, g, b = (int(colour[i:i + 2], 16) / 255.0 for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b < 0.5


def _number(value: Any) -> str:
    """A scalar as ``+1.234``; a tensor as its first entries and shape."""
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        value = value.item()
    if isinstance(value, (int, float)):
        return f"{value:+.4g}"
    flat = torch.as_tensor(value).flatten().tolist()
    shown = ", ".join(f"{v:+.3g}" for v in flat[:4]) + (", ..." if len(flat) > 4 else "")
    return f"[{shown}] {tuple(torch.as_tensor(value).shape)}"


def _meta(result: Interactions) -> str:
    """One line of facts: index, order cap, baseline, full value, calls, decoder, delta."""
    e = html.escape
    facts = [
        ("index", e(result.index)),
        ("max_order", e(str(result.max_order))),
        ("features", str(result.n_features)),
        ("baseline f(all removed)", e(_number(result.baseline_value))),
        ("f(all kept)", e(_number(result.full_value))),
        ("calls used", f"{result.n_evaluations:,}"),
        ("method", e(result.method or "-")),
    ]
    if "convergence_delta" in result.info:
        delta = torch.as_tensor(result.info["convergence_delta"]).double()
        text = (f"{float(delta):+.3g}" if delta.numel() == 1
                else f"max |.| {float(delta.abs().max()):.3g} over {delta.numel()}")
        facts.append(("convergence_delta", e(text)))
    return " &middot; ".join(f"<b>{k}</b> {v}" for k, v in facts)


def summary_html(result: Interactions, k: int = 10, n_examples: int = 3) -> str:
    """An HTML fragment: the result's facts and a table of its ``k`` strongest interactions.

    The facts are the index and order cap, the baseline ``f(all removed)`` and ``f(all kept)``,
    the model calls used, the decoder, and ``convergence_delta`` when the result has one (in
    ``info``). Rows hold the rank, the feature names, the order and the value (for tensor
    outputs: the first entries and the shape). This is what a notebook shows for a result.

    A batch (a result with ``batch_size > 1``, e.g. from
    :meth:`~torchspex.SpectralInteraction.attribute` on several inputs) has no common ranking,
    so it gets one table per example, ``result.select(b)``, for the first ``n_examples``
    examples, and a note saying how many more there are.

    Args:
        result: the result.
        k: rows per table.
        n_examples: most examples of a batch given a table.

    Example:
        >>> from torchspex import Interactions, SparseSpectrum
        >>> spec = SparseSpectrum.from_sets([(), (0,), (0, 1)], [1.0, -0.5, 0.25], 2)
        >>> page = summary_html(Interactions(spec, index="Moebius", feature_names=["a", "b"]))
        >>> "<td>a \\u00d7 b</td>" in page and "calls used" in page
        True
    """
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ValueError(f"`n_examples` must be a positive int; got {n_examples!r}.")
    batch = getattr(result, "batch_size", 1)  # duck-typed: viz does not import the model side
    if batch <= 1:
        return (
            f"<div class=\"tsx\"><style>{_CSS}</style>"
            f"<div class=\"meta\">Interactions &middot; {_meta(result)}</div>"
            f"{_top_table(result, k)}</div>"
        )
    shown = min(batch, n_examples)
    tables = "".join(f"<h2>example {b}</h2>{_top_table(result.select(b), k)}"
                     for b in range(shown))  # fmt: skip
    if shown < batch:
        tables += (
            f"<div class=\"note\">{batch - shown} more example{'s' if batch - shown > 1 else ''}"
            f": <code>result.select(i)</code> for example i, or "
            f"<code>summary_html(result, n_examples={batch})</code> for all.</div>"
        )
    return (
        f"<div class=\"tsx\"><style>{_CSS}</style>"
        f"<div class=\"meta\">Interactions &middot; <b>batch</b> {batch} examples &middot; "
        f"{_meta(result)}</div>{tables}</div>"
    )


def _top_table(result: Interactions, k: int) -> str:
    """The table of one result's ``k`` strongest interactions (rank, names, order, value)."""
    names = dict(zip(result.feature_ids, display_names(result)))
    rows = []
    for rank, (ids, value) in enumerate(result.top_k(k), start=1):
        label = " \u00d7 ".join(names[f] for f in ids)
        rows.append(f"<tr><td>{rank}</td><td>{html.escape(label)}</td><td>{len(ids)}</td>"
                    f"<td class=\"v\">{html.escape(_number(value))}</td></tr>")
    body = "".join(rows) or "<tr><td colspan=\"4\">no non-zero interaction</td></tr>"
    return (
        f"<table class=\"top\"><thead><tr><th>#</th><th>features</th><th>order</th>"
        f"<th>{html.escape(result.index)} value</th></tr></thead><tbody>{body}</tbody></table>"
    )


def text_html(
    result: Interactions,
    words: Sequence[str] | None = None,
    index: str | None = None,
    max_order: int | None = None,
    n_pairs: int = 5,
    line_width: int | None = None,
) -> str:
    """Words coloured by their first-order value and the strongest pairs as arcs, inline SVG.

    The words flow like text: they wrap at the width of the page (or notebook cell), with no
    script. An arc only ever joins two words of one line and runs above that line: the words
    of a pair (with those between them, and with pairs that overlap it) form one unbreakable
    run while the run is at most :data:`RUN_CHARS` characters (``line_width`` when given), and
    each run is its own small SVG, tall enough for its arcs. A pair whose words are farther
    apart is not drawn as an arc, since its words may land on different lines: its rank is
    written under both words and the pair is marked "far apart" in the list of pairs below (or
    "no room", where its own words fit a line but not with those of the arcs it shares words
    with).
    Hovering a word shows its value, hovering an arc the pair's value.

    Args:
        result: a result with one feature per word, scalar values.
        words: the words to show (default: the feature names).
        index: interaction index (default: the result's).
        max_order: order cap of the view (default: the result's).
        n_pairs: how many of the strongest pairs to show (as arcs or ranks).
        line_width: characters per line at most (default: as wide as the page).

    Returns:
        An HTML fragment (``<div>`` with one ``<svg>`` per run of words, a legend and the
        list of pairs).
    """
    if line_width is not None and (isinstance(line_width, bool) or not isinstance(
            line_width, int) or line_width < 1):
        raise ValueError(f"`line_width` must be a positive int or None; got {line_width!r}.")
    run_chars = RUN_CHARS if line_width is None else line_width
    text = text_view(result, words, index, max_order, n_pairs, run_chars, page=True)
    shown, lay, pairs, values = text.shown, text.layout, text.pairs, text.values
    named = disambiguate(text.words)  # for the hover texts and the pair list
    tags = dict(lay.tags)
    tag_px = _TAG_PX if tags else 0.0
    pair_limit = symmetric_limit(values)
    word_limit = symmetric_limit(text.first)
    drawn = lay.drawn.tolist()
    runs = []
    for lo, hi in lay.runs:
        inside = [k for k, (i, j) in enumerate(pairs.tolist())
                  if drawn[k] and lo <= min(i, j) and max(i, j) <= hi]
        local = pairs[inside] - lo if inside else np.zeros((0, 2), dtype=np.int64)
        run = layout_text(text.words[lo:hi + 1], local, line_width=10**9)
        runs.append(_run_svg(
            run, range(lo, hi + 1), text.words, named, text.first, word_limit,
            [(pairs[k].tolist(), float(values[k])) for k in inside], pair_limit, tags, tag_px,
            shown.index,
        ))
    e = html.escape
    # a pair not drawn is either too long for a line itself ("far apart") or fits but shares
    # words with arcs whose run, with it, would be too long ("no room")
    span = [len(" ".join(text.words[min(i, j):max(i, j) + 1])) for i, j in pairs.tolist()]
    why = ["arc" if arc else "far apart" if length > run_chars else "no room"
           for arc, length in zip(drawn, span)]  # fmt: skip
    n_far, n_room = why.count("far apart"), why.count("no room")
    notes = []
    if n_far:
        notes.append(f"the {n_far} pair{'s' if n_far != 1 else ''} whose words are too far "
                     f"apart for an arc")
    if n_room:
        notes.append(f"the {n_room} pair{'s' if n_room != 1 else ''} with no room for an arc "
                     f"beside the arcs {'they share' if n_room != 1 else 'it shares'} words with")
    far = (f" {' and '.join(notes)[0].upper()}{' and '.join(notes)[1:]} "
           f"{'are' if n_far + n_room != 1 else 'is'} numbered under both words."
           if notes else "")
    limit_style = "" if line_width is None else (
        f" style=\"max-width:{line_width * _FONT_PX * CHAR_EM + 2:.0f}px\"")
    return (
        f"<div class=\"tsx\"><style>{_CSS}</style>"
        f"<div class=\"note\">Word colour: first-order {e(shown.index)} value (red raises, "
        f"blue lowers); arcs: the strongest pairs (red positive, blue negative, wider when "
        f"stronger), each above its own line.{far} Hover for values.</div>"
        f"<div class=\"words\"{limit_style}>{''.join(runs)}</div>"
        f"{_legend_svg(word_limit, shown.index)}"
        f"{_pair_table(pairs, values, named, why, shown.index)}</div>"
    )


#: Longest run of words (characters) kept on one line so that its pairs can be arcs, when the
#: text view wraps at the page width: about 560 px, so runs fit a narrow notebook cell.
RUN_CHARS = 60
#: Height (px) under every word box for the ranks of far pairs (when there are any).
_TAG_PX = 15.0


@dataclass(frozen=True)
class _Canvas:
    """Layout units to SVG pixels: ``unit`` px per unit, ``pad`` px margin, ``y`` flipped at
    ``top``."""

    unit: float
    top: float
    pad: float = 8.0

    def x(self, x: float) -> str:
        return f"{self.pad + x * self.unit:.1f}"

    def y(self, y: float) -> str:
        return f"{self.pad + (self.top - y) * self.unit:.1f}"

    def xy(self, x: float, y: float) -> str:
        return f"{self.x(x)} {self.y(y)}"


def _run_svg(
    lay: TextLayout, positions: range, words: Sequence[str], named: Sequence[str],
    first: np.ndarray, word_limit: float, arcs: Sequence[tuple[list[int], float]],
    pair_limit: float, tags: dict[int, str], tag_px: float, index: str,
) -> str:
    """One run of words (kept on one line) with the arcs between them, as an inline ``<svg>``.

    The run's layout ``lay`` is in the run's own positions; ``positions`` maps them back to
    the text's, for the hover texts, tags and ``data-`` attributes."""
    unit = _FONT_PX * CHAR_EM
    canvas = _Canvas(unit=unit, top=lay.top, pad=_RUN_PAD)
    width = lay.width * unit + 2 * _RUN_PAD
    height = lay.height * unit + 2 * _RUN_PAD + tag_px
    parts = []
    for (pair, value), arc in zip(arcs, lay.arcs):
        i, j = pair
        colour = "#b2182b" if value > 0 else "#2166ac"
        stroke = 1.0 + 3.0 * abs(value) / pair_limit
        label = f"{named[i]} \u00d7 {named[j]}: {value:+.4g} ({index} pair)"
        xy = canvas.xy
        parts.append(
            f"<path class=\"arc\" data-pair=\"{i} {j}\" d=\"M {xy(*arc[0])} C {xy(*arc[1])} "
            f"{xy(*arc[2])} {xy(*arc[3])}\" stroke=\"{colour}\" stroke-width=\"{stroke:.2f}\">"
            f"<title>{html.escape(label)}</title></path>"
        )
    e = html.escape
    for local, word_at in enumerate(positions):
        word, name, value = words[word_at], named[word_at], float(first[word_at])
        (x, y), w = lay.centres[local], lay.widths[local]
        face = _colour(value, word_limit)
        ink = "#ffffff" if _is_dark(face) else "#111111"
        left, top = canvas.x(x - w / 2.0), canvas.y(y + HALF_HEIGHT)
        tag = ""
        if word_at in tags:
            tag = (f"<text class=\"tag\" x=\"{canvas.x(x)}\" "
                   f"y=\"{float(canvas.y(y - HALF_HEIGHT)) + tag_px - 3:.1f}\" "
                   f"text-anchor=\"middle\" font-size=\"11\" font-weight=\"bold\" "
                   f"fill=\"#333\">{e(tags[word_at])}</text>")
        parts.append(
            f"<g class=\"w\" data-i=\"{word_at}\"><title>{e(name)}: {value:+.4g} ({e(index)})"
            f"</title><rect x=\"{left}\" y=\"{top}\" width=\"{w * unit:.1f}\" "
            f"height=\"{2 * HALF_HEIGHT * unit:.1f}\" rx=\"4\" fill=\"{face}\" stroke=\"#bbb\" "
            f"stroke-width=\"0.6\"/>"
            f"<text x=\"{canvas.x(x)}\" y=\"{canvas.y(y)}\" "
            f"text-anchor=\"middle\" dominant-baseline=\"central\" font-size=\"{_FONT_PX:g}\" "
            f"fill=\"{ink}\" textLength=\"{max(len(word), 1) * unit:.1f}\" "
            f"lengthAdjust=\"spacingAndGlyphs\">{e(word)}</text>{tag}</g>"
        )
    return (
        f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.1f}\" "
        f"height=\"{height:.1f}\" viewBox=\"0 0 {width:.1f} {height:.1f}\">{''.join(parts)}</svg>"
    )


#: Margin (px) around a run's SVG: room for the round caps of the arcs and the box strokes.
_RUN_PAD = 2.0


def _legend_svg(limit: float, index: str) -> str:
    """The colour legend of the words: a gradient from ``-limit`` to ``+limit``, labelled."""
    lw = 240.0
    stops = "".join(f"<stop offset=\"{k / (len(_RDBU_R) - 1):.2f}\" stop-color=\"{c}\"/>"
                    for k, c in enumerate(_RDBU_R))
    return (
        f"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"legend\" width=\"{lw + 220:.0f}\" "
        f"height=\"30\" viewBox=\"0 0 {lw + 220:.0f} 30\">"
        f"<defs><linearGradient id=\"tsx-scale\">{stops}</linearGradient></defs>"
        f"<rect x=\"1\" y=\"2\" width=\"{lw:.1f}\" height=\"9\" "
        f"fill=\"url(#tsx-scale)\" stroke=\"#999\" stroke-width=\"0.5\"/>"
        f"<text x=\"1\" y=\"24\" font-size=\"11\">{-limit:+.3g}</text>"
        f"<text x=\"{1 + lw / 2:.1f}\" y=\"24\" font-size=\"11\" text-anchor=\"middle\">0</text>"
        f"<text x=\"{1 + lw:.1f}\" y=\"24\" font-size=\"11\" "
        f"text-anchor=\"end\">{limit:+.3g}</text>"
        f"<text x=\"{lw + 12:.1f}\" y=\"11\" font-size=\"11\" fill=\"#555\">"
        f"word value ({html.escape(index)})</text></svg>"
    )


def _pair_table(
    pairs: np.ndarray, values: np.ndarray, named: Sequence[str], why: Sequence[str],
    index: str,
) -> str:
    """The pairs shown, ranked, with their values and how they are drawn ("" when none):
    ``why`` per pair, ``"arc"``, ``"far apart"`` or ``"no room"`` (numbered under both words)."""
    e = html.escape
    rows = []
    for rank, ((i, j), v, kind) in enumerate(zip(pairs.tolist(), values.tolist(), why), 1):
        arc = kind == "arc"
        how = "arc" if arc else f"{kind}: {rank} under both words"
        row = "<tr>" if arc else "<tr class=\"far\">"
        rows.append(f"{row}<td>{rank}</td>"
                    f"<td>{e(named[i])} \u00d7 {e(named[j])}</td><td class=\"v\">{v:+.4g}</td>"
                    f"<td>{how}</td></tr>")
    listed = "".join(rows)
    return (
        f"<table class=\"top pairs\"><thead><tr><th>#</th><th>pair</th>"
        f"<th>{e(index)} value</th><th>drawn as</th></tr></thead><tbody>{listed}</tbody>"
        f"</table>" if listed else ""
    )


class HTMLView:
    """A self-contained HTML view of a result: shows itself in a notebook, saves as a page.

    Attributes:
        body: the HTML fragment (summary table, then the text view when asked for).
        title: the page title.
    """

    def __init__(self, body: str, title: str) -> None:
        self.body = body
        self.title = title

    def _repr_html_(self) -> str:
        return self.body

    def page(self) -> str:
        """A complete HTML document (UTF-8, no external resources)."""
        return (
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title></head>"
            f"<body style=\"margin:16px;background:#fff\">{self.body}</body></html>"
        )

    def save(self, path: str | os.PathLike) -> str:
        """Writes :meth:`page` to ``path``; returns the path as a string."""
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.page())
        return os.fspath(path)

    def __str__(self) -> str:
        return self.page()


def to_html(
    result: Interactions,
    text: bool | None = None,
    words: Sequence[str] | None = None,
    k: int = 10,
    n_pairs: int = 5,
    line_width: int | None = None,
    index: str | None = None,
    max_order: int | None = None,
    title: str = "torchspex interactions",
) -> HTMLView:
    """The summary table and, for word or sentence features, the text view.

    Args:
        result: the result (any output shape for the table; scalar for the text view).
        text: include the text view (:func:`text_html`); default: when ``words`` is given.
        words: the words of the text view (default: the feature names).
        k: rows of the summary table.
        n_pairs: pairs of the text view (arcs, or ranks under far-apart words).
        line_width: characters per line of the text view at most (default: the page width).
        index: interaction index of both parts (default: the result's).
        max_order: order cap of both parts (default: the result's).
        title: the page title.

    Returns:
        An :class:`HTMLView`; ``.save(path)`` writes the page, a notebook displays it.
    """
    shown = view(result, index, max_order)
    body = summary_html(shown, k)
    if text or (text is None and words is not None):
        body += text_html(shown, words, n_pairs=n_pairs, line_width=line_width)
    return HTMLView(body, title)


def save_html(result: Interactions, path: str | os.PathLike, **kwargs: Any) -> str:
    """Writes :func:`to_html` ``(result, **kwargs)`` as a self-contained page to ``path``.

    Returns:
        The path, as a string.
    """
    return to_html(result, **kwargs).save(path)
