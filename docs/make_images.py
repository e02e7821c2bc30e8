"""Regenerates the README's pictures of the views (``docs/images/``) from real models.

Three inputs, each drawn with every view that fits it:

* a 70-word restaurant review, explained on the MiniLM sentence encoder of tutorial 02 (the
  cosine similarity to "The service at this restaurant was terrible."): the HTML page as
  headless Chromium draws it in a 1,200 x 900 window, the text plot, the top-k bars;
* a scikit-learn digit as 64 patches (its 8 x 8 pixels, drawn 8x larger), explained on a
  small CNN (the log-odds of the predicted class): the image view and the heatmap;
* the 30 breast-cancer measurements, explained on an MLP (the log-odds of "malignant"): the
  heatmap (top 20 of 30) and the top-k bars; and the demo's figure (``torchspex demo``).

Run from the repository root (offline, CPU; about five minutes on two cores, most of it the
MiniLM calls; ``--cache DIR`` keeps the results for a rerun)::

    python docs/make_images.py                   # the README's pictures, in docs/images/
    python docs/make_images.py --out /tmp/views --all   # every view of every input

The HTML screenshot needs Chromium (Debian: ``apt-get install chromium fonts-dejavu-core``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from torchspex import Interactions, explain
from torchspex.viz import plot_heatmap, plot_image, plot_text, plot_top_k

ROOT = Path(__file__).resolve().parents[1]

REVIEW = (
    "We booked a table for eight at the new bistro on Main Street. The waiter was friendly "
    "but slow, and our soup arrived cold after forty minutes. The steak, however, was perfect "
    "and the wine list is excellent. Dessert was forgettable. We asked twice for water and "
    "the bill took ages. Lovely room, great food, poor service: I would gladly come back, but "
    "only for a quiet lunch with friends."
)
REFERENCE = "The service at this restaurant was terrible."
#: The held-out digit explained (the CNN trains on the first 1,500).
TEST_IMAGE = 1503


def cached(cache: Path | None, name: str, compute: Callable[[], Interactions]) -> Interactions:
    """``compute()``, or the result saved under ``cache`` by an earlier run."""
    path = None if cache is None else cache / f"{name}.pt"
    if path is not None and path.exists():
        return Interactions.load(path)
    start = time.perf_counter()
    result = compute()
    print(f"{name}: {result.n_evaluations} model calls in {time.perf_counter() - start:.0f} s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        result.save(path)
    return result


def text_result() -> Interactions:
    """FSII up to order 2 of MiniLM's similarity over the review's 70 words."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is in a local package
    sys.path.insert(0, str(ROOT / "tutorials"))
    import _models  # the tutorials' MiniLM loader (tutorials/_models.py)

    encoder = _models.load_minilm()
    feats, similarity = _models.word_similarity(encoder, REVIEW, REFERENCE)
    return explain(similarity, feats.n_features, method="auto", n_samples=1500, index="FSII",
                   max_order=2, feature_names=feats.labels, generator=0, batch_size=64)


def digits_model() -> tuple[nn.Module, torch.Tensor, int]:
    """A small CNN trained on scikit-learn's digits (the first 1,500), a held-out test image
    ``[1, 8, 8]`` and its true label."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(32 * 64, 10))
    opt = torch.optim.Adam(cnn.parameters(), lr=3e-3)
    for _ in range(8):
        for batch in torch.randperm(1500, generator=torch.Generator().manual_seed(1)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(cnn(images[batch]), labels[batch]).backward()
            opt.step()
    return cnn.eval(), images[TEST_IMAGE], int(labels[TEST_IMAGE])


def digits_result(cnn: nn.Module, image: torch.Tensor) -> Interactions:
    """FSII up to order 2 of the predicted class's log-odds over the 64 pixels (removed: 0)."""
    with torch.inference_mode():
        label = int(cnn(image[None]).argmax())

    def log_odds(masks: torch.Tensor) -> torch.Tensor:
        inputs = image.flatten() * masks.to(image.dtype)
        with torch.inference_mode():
            logits = cnn(inputs.reshape(-1, 1, 8, 8))
        others = torch.cat([logits[:, :label], logits[:, label + 1:]], dim=1)
        return logits[:, label] - torch.logsumexp(others, dim=1)

    names = [f"r{r}c{c}" for r in range(8) for c in range(8)]
    return explain(log_odds, 64, method="auto", n_samples=4000, index="FSII", max_order=2,
                   feature_names=names, generator=0)


def tabular_result() -> Interactions:
    """FSII up to order 2 of an MLP's log-odds of "malignant" over the 30 measurements."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(mlp(x), y).backward()
        opt.step()
    row, baseline = x[int((y == 0).nonzero()[5])], x.mean(0)

    def log_odds(masks: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            logits = mlp(torch.where(masks, row, baseline))
        return logits[:, 0] - logits[:, 1]

    return explain(log_odds, 30, method="auto", n_samples=4000, index="FSII", max_order=2,
                   feature_names=list(data.feature_names), generator=0)


def save(fig: plt.Figure, path: Path, dpi: int = 100) -> None:
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 900) -> None:
    """The page as headless Chromium draws it in a ``width x height`` window."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print(f"skipped {png}: no Chromium (apt-get install chromium fonts-dejavu-core)")
        return
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )
    print(f"wrote {png} ({png.stat().st_size // 1024} KB)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--cache", type=Path, default=None, help="keep the results here")
    parser.add_argument("--all", action="store_true", help="also the views the README skips")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    text = cached(args.cache, "text", text_result)
    page = out / "html_text_view.html"
    text.save_html(page, text=True, n_pairs=8)
    screenshot(page, out / "html_text_view.png")
    if out == ROOT / "docs" / "images":
        page.unlink()  # the README shows the screenshot, not the page
    save(plot_text(text, n_pairs=8)[0], out / "text_interactions.png")

    cnn, image, label = digits_model()
    digits = cached(args.cache, "digits", lambda: digits_result(cnn, image))
    big = image[0].repeat_interleave(8, 0).repeat_interleave(8, 1)  # 64 x 64 pixels
    mask = torch.arange(64).reshape(8, 8).repeat_interleave(8, 0).repeat_interleave(8, 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 5.0),
                                      gridspec_kw={"width_ratios": [1.0, 1.25]})
    left.imshow(big, cmap="gray_r")
    with torch.inference_mode():
        predicted = int(cnn(image[None]).argmax())
    left.set_title(f"input: a held-out {label} (CNN predicts {predicted}), 64 patches")
    left.set_xticks(torch.arange(4, 64, 8).tolist(), [f"c{c}" for c in range(8)])
    left.set_yticks(torch.arange(4, 64, 8).tolist(), [f"r{r}" for r in range(8)])
    left.tick_params(length=0, labelsize=8)
    paper = 1.0 - 0.6 * big  # under the values: grey ink on white, as on the left
    plot_image(digits, paper, mask, n_pairs=6, ax=right)
    fig.tight_layout()
    save(fig, out / "vision_patches.png")

    tabular = cached(args.cache, "tabular", tabular_result)
    save(plot_heatmap(tabular)[0], out / "tabular_heatmap.png", dpi=80)
    save(plot_top_k(tabular, k=12)[0], out / "tabular_top_k.png")

    from torchspex import _demo

    _demo.run_demo(output=str(out / "demo.png"))

    if args.all:
        save(plot_top_k(text, k=12)[0], out / "text_top_k.png")
        save(plot_heatmap(text)[0], out / "text_heatmap.png", dpi=80)
        save(plot_heatmap(digits)[0], out / "digits_heatmap.png", dpi=80)
        save(plot_top_k(digits, k=12)[0], out / "digits_top_k.png")
        save(plot_text(tabular, n_pairs=6)[0], out / "tabular_as_text.png")
        tabular.save_html(out / "tabular.html", text=True, n_pairs=8)
        screenshot(out / "tabular.html", out / "tabular_html.png")


if __name__ == "__main__":
    main()
