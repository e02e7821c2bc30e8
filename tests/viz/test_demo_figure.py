"""The demo's figure (``torchspex demo``) on a saturated classifier: what the bars leave out."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from conftest import render, texts_inside

import torchspex._demo as demo
from torchspex import Interactions, SparseSpectrum


def saturated_result() -> Interactions:
    """10 measurements of about 7 log-odds each and 45 small pairs: f(x) in the sixties."""
    g = torch.Generator().manual_seed(0)
    sets = [(), *[(i,) for i in range(10)], *itertools.combinations(range(10), 2)]
    coef = torch.cat([torch.tensor([36.0]), -3.5 + 0.3 * torch.randn(10, generator=g),
                      0.4 * torch.randn(45, generator=g)]).double()
    spec = SparseSpectrum.from_sets(sets, coef, 10)
    return Interactions(spec, index="FSII", max_order=2, method="exhaustive",
                        feature_names=[f"measurement {i}" for i in range(10)])


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"[+-]\d+\.?\d*", text.replace("\u2212", "-"))]


def test_saturated_demo_figure_says_what_the_bars_leave_out():
    res = saturated_result()
    assert res.full_value > 40 and abs(res.baseline_value) < 10  # saturated: P(f) ~ 1
    fig, ax = demo.demo_figure(res)
    render(fig)
    texts_inside(fig)  # three-line title, value labels and caption all on the page
    top = res.top_k(demo.TOP_K)
    values = [float(v) for _, v in top]
    caption = ax.texts[-1].get_text().replace("\n", " ")
    drawn, gap, rest = _numbers(caption)[:3]
    assert caption.startswith(f"sum of the {demo.TOP_K} bars = ")
    assert drawn == pytest.approx(sum(values), abs=0.06)
    assert gap == pytest.approx(res.full_value - res.baseline_value, abs=0.06)
    assert rest == pytest.approx(gap - drawn, abs=0.06)
    assert "f(x) \u2212 baseline" in caption
    n_rest = 55 - demo.TOP_K
    singles = 10 - sum(len(ids) == 1 for ids, _ in top)
    kinds = []
    if singles:
        kinds.append(f"{singles} single measurement{'s' if singles != 1 else ''}")
    kinds.append(f"{n_rest - singles} pairs")
    assert f"is in the {n_rest} terms not drawn ({', '.join(kinds)})" in caption
    assert "(P > 0.999)" in ax.get_title()
    # every bar carries its value, and the labels neither overlap nor leave the axes
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = ax.texts[:-1]
    assert _numbers(" ".join(t.get_text() for t in labels)) == pytest.approx(values, abs=0.006)
    boxes = [t.get_window_extent(renderer) for t in labels]
    frame = ax.get_window_extent(renderer)
    for i, box in enumerate(boxes):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1
        assert not any(box.overlaps(other) for other in boxes[i + 1:])
