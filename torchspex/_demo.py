"""The end-to-end demo behind ``torchspex demo`` (needs the ``demo`` extra)."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from torchspex.explain import explain
from torchspex.interactions import Interactions

#: How many interactions the demo lists, in the terminal and in the plot alike.
TOP_K = 10
#: What the demo's value function returns.
TARGET = "log-odds of 'malignant'"
#: What a removed measurement becomes.
REMOVED = "training mean"


def _load_data() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError('the demo needs scikit-learn: pip install "torchspex[demo]"') from err
    data = load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    return x, torch.tensor(data.target), list(data.feature_names)


def _train(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def run_demo(
    output: str = "torchspex_demo.png", index: str = "FSII", max_order: int = 2, seed: int = 0
) -> None:
    """Trains an MLP on breast-cancer data and explains one malignant prediction.

    The 30 features are grouped into the 10 measurements they describe (mean, standard error
    and worst value of radius, texture, ...); a removed group takes the training mean.
    """
    x, y, names = _load_data()
    split = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = split[: len(y) * 3 // 4], split[len(y) * 3 // 4 :]
    model = _train(x[train], y[train], seed)
    with torch.inference_mode():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    groups = sorted({n.replace("mean ", "").replace(" error", "").replace("worst ", "")
                     for n in names})
    group_of = torch.tensor(
        [groups.index(n.replace("mean ", "").replace(" error", "").replace("worst ", ""))
         for n in names]
    )
    malignant = test[y[test] == 0]
    row = x[malignant[0]]  # a held-out malignant case
    baseline = x[train].mean(0)

    def value_function(masks: torch.Tensor) -> torch.Tensor:
        keep = masks[:, group_of]  # [m, 30]
        inputs = torch.where(keep, row, baseline)
        with torch.inference_mode():
            logits = model(inputs)
            return logits[:, 0] - logits[:, 1]  # log-odds of "malignant"

    start = time.perf_counter()
    result = explain(value_function, len(groups), method="exhaustive", index=index,
                     max_order=max_order, feature_names=groups)
    seconds = time.perf_counter() - start
    print(f"MLP test accuracy on breast-cancer data: {accuracy:.3f}")
    print(f"Explaining the {TARGET} for one held-out patient: "
          f"{result.n_evaluations} model evaluations in {seconds:.2f} s")
    print(f"f(x) = {TARGET} = {result.full_value:+.3f}; baseline f(every measurement at its "
          f"{REMOVED}) = {result.baseline_value:+.3f}")
    print(result)
    _plot(result, output)
    print(f"Plot written to {output}")


def demo_figure(result: Interactions, k: int = TOP_K) -> tuple[Any, Any]:
    """The demo's picture: the ``k`` strongest terms as bars, with what they explain.

    The title counts what the bars are (single measurements, pairs), the subtitle states the
    explained quantity ``f(x)`` (with its probability, which shows when the model is
    saturated) and the baseline ``f`` with every measurement removed. Each bar is labelled
    with its value, and the caption under the axes says what the bars leave out: their sum,
    ``f(x) - baseline``, and the rest, in the terms not drawn.

    Returns:
        ``(fig, ax)`` of :func:`torchspex.viz.plot_top_k`; the caption is ``ax.texts[-1]``.
    """
    import math

    from torchspex.viz import plot_top_k
    from torchspex.viz.plots import top_k_caption

    fig, ax = plot_top_k(result, k=k)
    top = result.top_k(k)
    orders = [len(ids) for ids, _ in top]
    kinds = {1: "single measurement", 2: "pair", 3: "triple"}
    parts = []
    for order in sorted(set(orders)):
        count = orders.count(order)
        name = kinds.get(order, f"order-{order} term")
        parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    full = float(result.full_value)
    chance = 1.0 / (1.0 + math.exp(-min(max(full, -700.0), 700.0)))
    odds = (f"P > {1 - 1e-3:.3f}" if chance > 1 - 1e-3
            else f"P < {1e-3:.3f}" if chance < 1e-3 else f"P = {chance:.3f}")
    # the demo's own three-line title replaces plot_top_k's (left) one, and the legend, which
    # plot_top_k puts above the axes, goes inside them, into the empty corner beside this
    # prediction's weakest bars
    ax.set_title("", loc="left")
    ax.set_title(
        f"Top {len(orders)} {result.index} terms for one breast-cancer prediction "
        f"({', '.join(parts)})\n"
        f"f(x) = {TARGET} = {full:+.2f} ({odds})\n"
        f"baseline (all measurements at their {REMOVED}) = {result.baseline_value:+.2f}",
        fontsize=9,
    )
    legend = ax.get_legend()
    if legend is not None:
        ax.legend(legend.legend_handles, [t.get_text() for t in legend.get_texts()],
                  loc="lower right", fontsize=8)  # fmt: skip
    ax.set_xlabel(f"{result.index} contribution to the {TARGET}")
    ax.texts[-1].set_text(top_k_caption(result, top, kept="f(x)", removed="baseline",
                                        names=["single measurement", "pair", "triple"]))
    fig.set_size_inches(max(fig.get_figwidth(), 8.0), fig.get_figheight() + 0.3)
    fig.tight_layout()
    return fig, ax


def _plot(result: Interactions, output: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover
        raise ImportError('the demo plot needs matplotlib: pip install "torchspex[demo]"') from err
    fig, _ = demo_figure(result)
    fig.savefig(output, dpi=120)
    plt.close(fig)
