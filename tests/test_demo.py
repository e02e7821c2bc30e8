from pathlib import Path

import pytest
import torch

import torchspex._demo as demo
from torchspex import Interactions, SparseSpectrum
from torchspex.__main__ import main


def _printed_top(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("Top interactions:") + 1
    return [line.strip() for line in lines[start:] if line.startswith("  (")]


@pytest.mark.slow
def test_demo_explains_a_real_model_and_writes_a_plot(tmp_path: Path, capsys, monkeypatch) -> None:
    drawn = []

    def spy(result, k=demo.TOP_K):
        fig, ax = original(result, k)
        drawn.append(ax)
        return fig, ax

    original = demo.demo_figure
    monkeypatch.setattr(demo, "demo_figure", spy)
    out = tmp_path / "demo.png"
    assert main(["demo", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MLP test accuracy" in text
    assert "n_evaluations=1024" in text
    assert "f(x) = log-odds of 'malignant' = " in text and "baseline f(" in text
    printed = _printed_top(text)
    assert out.stat().st_size > 10_000
    (ax,) = drawn
    bars = [t.get_text() for t in ax.get_yticklabels()]
    assert len(bars) == len(printed) == demo.TOP_K  # the plot shows what the terminal lists
    assert [b.replace(" \u00d7 ", ", ") for b in bars] == [p.split(")")[0][1:] for p in printed]


def test_demo_figure_says_what_it_explains_and_counts_what_it_shows() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"m{i}" for i in range(6)]
    sets = [(), *[(i,) for i in range(6)], (0, 1), (2, 3), (4, 5)]
    spec = SparseSpectrum.from_sets(sets, torch.linspace(1.0, 0.1, len(sets)).double(), 6)
    result = Interactions(spec, index="FSII", max_order=2, feature_names=names)
    fig, ax = demo.demo_figure(result, k=8)
    title = ax.get_title()
    orders = [len(ids) for ids, _ in result.top_k(8)]
    assert len(ax.patches) == 8
    singles, pairs = orders.count(1), orders.count(2)
    assert "Top 8 FSII terms" in title and f"{singles} single measurements" in title
    assert f"{pairs} pair" in title and "Strongest interactions" not in title
    assert "log-odds of 'malignant'" in title and f"{result.full_value:+.2f}" in title
    assert f"baseline (all measurements at their training mean) = {result.baseline_value:+.2f}" in (
        title)
    assert "log-odds" in ax.get_xlabel()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = ax.title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1  # the two-line title is not cut
    plt.close(fig)
