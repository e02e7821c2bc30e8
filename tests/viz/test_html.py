"""HTML views: the notebook table, the SVG text view, and the saved page in a real browser."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from torchspex import Interactions, SparseSpectrum
from torchspex.viz import HTMLView, summary_html, text_html, to_html
from torchspex.viz._common import disambiguate
from torchspex.viz.html import _colour

WORDS = ["Our", "hotel", "wasn't", "cheap", "but", "the", "view", "of", "the", "beach"]
SVG = "{http://www.w3.org/2000/svg}"


def text_result() -> Interactions:
    spec = SparseSpectrum.from_sets(
        [(), (1,), (3,), (6,), (9,), (3, 6), (0, 9), (5, 8)],
        [0.2, 0.3, -0.9, 0.6, 0.1, -0.5, 0.4, 0.05], len(WORDS),
    )
    return Interactions(spec, index="FSII", max_order=2, feature_names=WORDS, n_evaluations=1024,
                        method="exhaustive")


def svg_of(fragment: str) -> ET.Element:
    """The words of a text view (one ``<svg>`` per run of words) under one element."""
    words = re.search(r'<div class="words"[^>]*>(.*?)</div>', fragment, re.S).group(1)
    return ET.fromstring(f"<runs>{words}</runs>")


def test_notebook_table_has_names_index_baseline_calls_and_delta():
    res = text_result()
    res.info["convergence_delta"] = torch.tensor(-2.5e-7)
    page = res._repr_html_()
    assert page == summary_html(res)
    for fact in ("<b>index</b> FSII", "<b>max_order</b> 2", "<b>calls used</b> 1,024",
                 "<b>method</b> exhaustive", f"{res.baseline_value:+.4g}",
                 "<b>convergence_delta</b> -2.5e-07"):
        assert fact in page, fact
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>(\d)</td><td class=\"v\">([^<]*)",
                      page)
    names = {0: "Our", 3: "cheap", 5: "the [5]", 6: "view", 8: "the [8]", 9: "beach", 1: "hotel"}
    expected = [(str(r), " \u00d7 ".join(names.get(i, WORDS[i]) for i in ids), str(len(ids)),
                 f"{v:+.4g}") for r, (ids, v) in enumerate(res.top_k(10), start=1)]
    assert rows == expected and len(rows) == len(res.top_k(10))
    assert "the [5] \u00d7 the [8]" in page  # a repeated word says which one


def test_table_escapes_names_and_takes_tensor_outputs():
    spec = SparseSpectrum.from_sets([(), (0,), (0, 1)], [1.0, -0.5, 0.25], 2)
    coef = torch.stack([spec.coefficients, 2 * spec.coefficients], dim=1)
    res = Interactions(spec.replace(coefficients=coef), feature_names=["<b>x</b>", "a&b"])
    res.info["convergence_delta"] = torch.tensor([1e-3, -4e-3])
    page = summary_html(res)
    assert "<b>x</b>" not in page.replace("<b>index</b>", "") and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "a&amp;b" in page and "(2,)" in page and "max |.| 0.004 over 2" in page
    assert "no non-zero" in summary_html(Interactions(SparseSpectrum.zeros(3)))


def test_text_view_words_arcs_and_hover_values():
    res = text_result()
    fragment = text_html(res, n_pairs=2, line_width=30)
    runs = svg_of(fragment)
    groups = runs.findall(f".//{SVG}g")
    assert [g.find(f"{SVG}text").text for g in groups] == WORDS
    assert [int(g.get("data-i")) for g in groups] == list(range(len(WORDS)))
    first = [res[(i,)] for i in range(len(WORDS))]  # order-1 values of the same view
    hovers = [g.find(f"{SVG}title").text for g in groups]
    assert hovers[3] == f"cheap: {first[3]:+.4g} (FSII)" and hovers[5].startswith("the [5]:")
    fills = [g.find(f"{SVG}rect").get("fill") for g in groups]
    assert fills[3] == _colour(first[3], max(abs(v) for v in first)) and fills[3] != fills[4]
    top = dict(res.top_k(2, order=2))
    assert set(top) == {(3, 6), (0, 9)}
    (arc,) = runs.findall(f".//{SVG}path")  # "Our ... beach" is longer than 30 characters
    assert arc.get("data-pair") == "3 6" and arc.find(f"{SVG}title").text == (
        f"cheap \u00d7 view: {float(top[(3, 6)]):+.4g} (FSII pair)")
    rank = list(top).index((0, 9)) + 1  # ... so its rank is written under both words
    tags = {int(g.get("data-i")): g.find(f"{SVG}text[@class='tag']").text for g in groups
            if g.find(f"{SVG}text[@class='tag']") is not None}
    assert tags == {0: str(rank), 9: str(rank)}
    # each run of words is one svg; no two word boxes of a run overlap, all inside it
    for svg in runs:
        width, height = float(svg.get("width")), float(svg.get("height"))
        boxes = [[float(r.get(k)) for k in ("x", "y", "width", "height")]
                 for r in svg.iter(f"{SVG}rect")]
        for i, (x, y, w, h) in enumerate(boxes):
            assert x >= 0 and x + w <= width and y >= 0 and y + h <= height
            for x2, _, w2, _ in boxes[i + 1:]:  # one line: side by side
                assert x + w <= x2 or x2 + w2 <= x
    assert 'style="max-width:272px"' in fragment  # 30 characters of 9 px, at most
    with pytest.raises(ValueError, match="`words` must have 10"):
        text_html(res, words=["a"])
    with pytest.raises(ValueError, match="`line_width` must be a positive int or None"):
        text_html(res, line_width=0)


def _arc_points(path: ET.Element) -> np.ndarray:
    return np.array([float(v) for v in re.findall(r"-?\d+\.?\d*", path.get("d"))]).reshape(4, 2)


def long_result(n_words: int = 70) -> Interactions:
    """A 70-word text with eight pairs: four of near words, four of words far apart."""
    words = ("We booked a table for eight at the new bistro on Main Street and the waiter "
             "was friendly but slow " * 4).split()[:n_words]
    near = [(3, 14), (20, 22), (40, 41), (60, 66)]
    far = [(1, 69), (5, 50), (14, 33), (30, 64)]
    sets = [(i,) for i in range(n_words)] + near + far
    g = torch.Generator().manual_seed(0)
    values = torch.cat([0.3 * torch.randn(n_words, generator=g, dtype=torch.float64),
                        torch.tensor([2.0, -1.8, 1.6, -1.4, 1.9, -1.7, 1.5, -1.3],
                                     dtype=torch.float64)])
    spec = SparseSpectrum.from_sets(sets, values, n_words)
    return Interactions(spec, index="Moebius", max_order=2, feature_names=words)


def test_text_view_of_70_words_draws_arcs_in_a_run_and_lists_far_pairs():
    res = long_result()
    fragment = text_html(res, n_pairs=8)
    runs = svg_of(fragment)
    top = res.top_k(8, order=2)
    near = {(3, 14), (20, 22), (40, 41), (60, 66)}
    for svg in runs:  # an arc joins two words of its own svg (run), from box top to box top
        rects = {int(g.get("data-i")): [float(g.find(f"{SVG}rect").get(k)) for k in (
            "x", "y", "width")] for g in svg.iter(f"{SVG}g")}
        for path in svg.iter(f"{SVG}path"):
            i, j = map(int, path.get("data-pair").split())
            assert (i, j) in near and i in rects and j in rects
            points = _arc_points(path)
            for end, word in ((points[0], i), (points[3], j)):
                x, y, w = rects[word]
                assert end[0] == pytest.approx(x + w / 2, abs=0.1) and end[1] == pytest.approx(
                    y, abs=0.1)
            assert (points[:, 1] <= min(rects[i][1], rects[j][1]) + 0.1).all()  # above it
    drawn = {tuple(map(int, p.get("data-pair").split())) for p in runs.iter(f"{SVG}path")}
    assert drawn == near
    # the far pairs: their rank under both words, and a row "far apart" in the list
    tags = {int(g.get("data-i")): g.find(f"{SVG}text[@class='tag']").text
            for g in runs.iter(f"{SVG}g") if g.find(f"{SVG}text[@class='tag']") is not None}
    expected: dict[int, list[str]] = {}
    for rank, (ids, _) in enumerate(top, start=1):
        if tuple(ids) not in near:
            for i in ids:
                expected.setdefault(i, []).append(str(rank))
    assert tags == {i: ",".join(r) for i, r in expected.items()} and len(tags) == 8
    rows = re.findall(r"<tr(?: class=\"far\")?><td>(\d+)</td><td>([^<]*)</td><td class=\"v\">"
                      r"([^<]*)</td><td>([^<]*)</td>", fragment)
    assert len(rows) == 8
    named = disambiguate(res.feature_names)  # a repeated word carries its position
    for (rank, label, value, how), (ids, v) in zip(rows, top):
        assert label == " \u00d7 ".join(named[i] for i in ids)
        assert value == f"{float(v):+.4g}"
        assert how == ("arc" if tuple(ids) in near else f"far apart: {rank} under both words")
    assert "The 4 pairs whose words are too far apart for an arc are numbered" in fragment


def test_adjacent_words_without_room_for_an_arc_are_not_called_far_apart():
    # "breakfast croissants" are neighbours, but "croissants" also ends a stronger pair whose
    # run fills most of a line: with it the run would pass the line, so the neighbours are
    # numbered, and listed as "no room", not as "far apart"
    words = ["Honestly", "the", "hotel's", "breakfast", "croissants", "and", "coffee", "was",
             "surprisingly", "good", "but", "the", "Wi-Fi", "kept", "dropping"]
    n = len(words)
    strong, neighbours = (4, 12), (3, 4)
    sets = [(i,) for i in range(n)] + [strong, neighbours]
    values = torch.cat([torch.full((n,), 0.01, dtype=torch.float64),
                        torch.tensor([2.0, 1.0], dtype=torch.float64)])
    res = Interactions(SparseSpectrum.from_sets(sets, values, n), index="Moebius", max_order=2,
                       feature_names=words)
    fragment = text_html(res, n_pairs=2)
    rows = dict(re.findall(r"<td>([^<]*)</td><td class=\"v\">[^<]*</td><td>([^<]*)</td>",
                           fragment))  # fmt: skip
    assert rows == {"croissants \u00d7 Wi-Fi": "arc",
                    "breakfast \u00d7 croissants": "no room: 2 under both words"}
    assert "far apart" not in fragment
    assert ("The 1 pair with no room for an arc beside the arcs it shares words with is "
            "numbered under both words.") in fragment


def test_page_is_self_contained(tmp_path: Path):
    res = text_result()
    view = to_html(res, text=True)
    assert isinstance(view, HTMLView) and view._repr_html_() == view.body
    page = view.page()
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    lowered = page.lower()
    for banned in ("<script", "<link", "@import", "@font-face", "<img", "<iframe", "src="):
        assert banned not in lowered, banned
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}
    assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#tsx-scale"}
    path = res.save_html(tmp_path / "r.html", words=[w.upper() for w in WORDS])
    saved = Path(path).read_text(encoding="utf-8")
    assert "CHEAP" in saved and "<svg" in saved  # words given: the text view is included
    assert "<svg" not in Path(res.save_html(tmp_path / "t.html")).read_text(encoding="utf-8")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _browse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="needs Chromium (Debian package `chromium`)")
def test_saved_page_renders_in_chromium(tmp_path: Path):
    import matplotlib.image as mpimg

    res = text_result()
    page = tmp_path / "result.html"
    res.save_html(page, text=True)
    dom = _browse(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    for expected in ("calls used", "FSII value", "cheap", "beach", "cheap \u00d7 view"):
        assert expected in text, expected
    assert "<svg" in dom.stdout and dom.stdout.count("<g class=\"w\" data-i=") == len(WORDS)
    shot = tmp_path / "shot.png"
    done = _browse(tmp_path, f"--screenshot={shot}", "--window-size=900,700", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (700, 900)
    assert pixels.std() > 0.05, "the page rendered blank"
    # the strongest word's box colour is on screen (the SVG was drawn, not only the table)
    first = np.array([res[(i,)] for i in range(len(WORDS))])
    face = _colour(float(first[3]), float(np.abs(first).max()))
    rgb = np.array([int(face[i:i + 2], 16) / 255.0 for i in (1, 3, 5)])
    assert (np.abs(pixels - rgb).max(axis=-1) < 0.03).sum() > 200


#: Measures, in the browser, the boxes of the words and arcs of each text view on the page and
#: writes them into the page as JSON (the views themselves hold no script).
_MEASURE = """<script>
const box = e => { const r = e.getBoundingClientRect();
  return [r.left, r.top, r.right, r.bottom]; };
const views = [...document.querySelectorAll('.words')].map(v => ({
  width: v.getBoundingClientRect().width,
  words: [...v.querySelectorAll('g.w')].map(g => [+g.dataset.i, ...box(g.querySelector('rect'))]),
  arcs: [...v.querySelectorAll('path.arc')].map(p => [p.dataset.pair, ...box(p)])}));
const out = document.createElement('pre'); out.id = 'geometry';
out.textContent = JSON.stringify(views); document.body.appendChild(out);
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="needs Chromium (Debian package `chromium`)")
def test_in_chromium_words_fill_the_page_and_no_arc_crosses_a_line_of_words(tmp_path: Path):
    import json

    res = long_result()
    fragment = text_html(res, n_pairs=8)
    page = tmp_path / "measure.html"  # the same view in the page's width and in a 600 px box
    page.write_text(f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>"
                    f"<body style=\"margin:16px\">{fragment}<div style=\"width:600px\">"
                    f"{fragment}</div>{_MEASURE}</body></html>", encoding="utf-8")
    dom = _browse(tmp_path, "--dump-dom", "--window-size=1200,900", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="geometry">(.*?)</pre>', dom.stdout, re.S)
    views = json.loads(html.unescape(found.group(1)))
    assert [round(v["width"]) for v in views] == [1200 - 32, 600]
    for view in views:
        words = {i: (x0, y0, x1, y1) for i, x0, y0, x1, y1 in view["words"]}
        assert sorted(words) == list(range(70))
        right = max(x1 for _, _, x1, _ in words.values()) - min(
            x0 for x0, _, _, _ in words.values())
        assert right > 0.85 * view["width"]  # the words use the width they are given
        assert right <= view["width"] + 0.5
        tops = sorted({round(y0) for _, y0, _, _ in words.values()})
        assert len(tops) >= (4 if view["width"] > 1000 else 7)  # wrapped into lines
        assert len(view["arcs"]) == 4
        for pair, ax0, ay0, ax1, ay1 in view["arcs"]:
            i, j = map(int, pair.split())
            assert words[i][1] == pytest.approx(words[j][1], abs=0.5)  # one line ...
            assert ay1 == pytest.approx(words[i][1], abs=1.0)  # ... the arc ends on its boxes
            for x0, y0, x1, y1 in words.values():  # and runs through no word's box
                assert ax1 <= x0 + 0.5 or ax0 >= x1 - 0.5 or ay1 <= y0 + 1.0 or ay0 >= y1, (
                    pair, (x0, y0, x1, y1))


def batch_result(batch_size: int):
    from torchspex import SpectralInteraction

    inputs = torch.arange(1.0, 1.0 + 4 * batch_size).reshape(batch_size, 4)
    explainer = SpectralInteraction(lambda x: x[:, 0] * x[:, 1] + x[:, 2] - 0.5 * x[:, 3])
    return explainer.attribute(inputs, method="exhaustive")


def test_notebook_summary_of_a_batch_has_a_table_per_example():
    res = batch_result(4)
    with pytest.raises(ValueError, match="batch of 4"):
        res.top_k(3)  # a batch has no common ranking ...
    page = res._repr_html_()  # ... so the notebook view shows one table per example
    assert page == summary_html(res)
    assert "<b>batch</b> 4 examples" in page and "<b>calls used</b> 16" in page
    heads = re.findall(r"<h2>example (\d+)</h2>", page)
    assert heads == ["0", "1", "2"]
    assert "1 more example: <code>result.select(i)</code>" in page
    tables = re.findall(r"<table class=\"top\">.*?</table>", page)
    for b, table in enumerate(tables):
        alone = summary_html(res.select(b))
        assert table in alone  # example b's table is the table of result.select(b)
        values = re.findall(r"<td class=\"v\">([^<]*)", table)
        assert values == [f"{float(v):+.4g}" for _, v in res.select(b).top_k(10)]
    assert tables[0] != tables[1]  # the examples differ (x0 * x1 grows with the inputs)

    every = summary_html(res, k=2, n_examples=10)
    assert re.findall(r"<h2>example (\d+)</h2>", every) == ["0", "1", "2", "3"]
    assert "more example" not in every
    assert every.count("<tr><td>1</td>") == 4 and every.count("<tr><td>3</td>") == 0
    assert "<h2>example 0</h2>" in to_html(res).body  # the saved page's table too
    with pytest.raises(ValueError, match="`n_examples` must be a positive int"):
        summary_html(res, n_examples=0)


def test_notebook_summary_of_a_batch_of_one_is_the_plain_table():
    res = batch_result(1)
    page = summary_html(res)
    assert "<h2>" not in page and "<b>batch</b>" not in page
    assert re.findall(r"<table class=\"top\">.*?</table>", page) == re.findall(
        r"<table class=\"top\">.*?</table>", summary_html(res.select(0)))
