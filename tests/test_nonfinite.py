"""``nonfinite="drop"``: NaN/inf values are left out of ProxySPEX's fit, loudly; never hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torchspex
from tests.helpers import planted_spectrum

N = 20


def _game(seed: int = 0):
    truth = planted_spectrum(N, 10, 2, torch.Generator().manual_seed(seed))
    calls = {"masks": 0}

    def f(masks: torch.Tensor) -> torch.Tensor:
        calls["masks"] += masks.shape[0]
        values = truth.evaluate(masks)
        broken = masks[:, 0] & masks[:, 1] & masks[:, 2] & masks[:, 3]  # ~1 in 16 masks
        return torch.where(broken, float("nan"), values)

    return truth, f, calls


def test_proxyspex_drops_nonfinite_masks_with_a_warning() -> None:
    truth, f, _ = _game()
    with pytest.warns(UserWarning, match=r"NaN or inf for \d+ of 800 masks") as record:
        result = torchspex.explain(
            f, N, method="proxyspex", n_samples=800, nonfinite="drop", index="Fourier"
        )
    message = str(record[0].message)
    dropped = int(message.split("NaN or inf for ")[1].split(" ")[0])
    assert result.info["n_dropped"] == dropped and 20 < dropped < 90
    assert "nonfinite='drop'" in message
    # the fit on the finite masks is faithful where the function is defined
    held = torch.rand(2000, N, generator=torch.Generator().manual_seed(1)) < 0.5
    held = held[~(held[:, :4].all(dim=1))]
    assert float(result.r2(held, truth.evaluate(held))) > 0.95
    assert torch.isfinite(result.spectrum.coefficients).all()


@pytest.mark.parametrize("method", ["spex", "exhaustive"])
def test_drop_with_a_structured_method_is_refused_before_any_call(method: str) -> None:
    _, f, calls = _game()
    n = N if method == "spex" else 8
    with pytest.raises(ValueError, match="needs method='proxyspex'"):
        torchspex.explain(f, n, method=method, n_samples=5000, nonfinite="drop")
    assert calls["masks"] == 0


def test_default_still_raises_and_names_the_mode() -> None:
    _, f, _ = _game()
    with pytest.raises(ValueError, match=r"NaN or inf .* nonfinite='drop'"):
        torchspex.explain(f, N, method="proxyspex", n_samples=500)


def test_too_few_finite_values_raise() -> None:
    with pytest.raises(ValueError, match="fewer than 10 finite values"):
        torchspex.explain(
            lambda m: torch.full((m.shape[0],), float("inf")), N, method="proxyspex",
            n_samples=200, nonfinite="drop",
        )  # fmt: skip


def test_nonfinite_values_stored_by_drop_are_not_hidden_by_a_later_raise(tmp_path: Path) -> None:
    _, f, calls = _game()
    path = tmp_path / "store.sqlite"
    kwargs = {"method": "proxyspex", "n_samples": 600, "cache": path}
    with pytest.warns(UserWarning, match="left them out"):
        torchspex.explain(f, N, nonfinite="drop", **kwargs)
    before = calls["masks"]
    with pytest.raises(ValueError, match="NaN or inf"):
        torchspex.explain(f, N, **kwargs)  # served from the store, still checked
    with pytest.warns(UserWarning, match="left them out"):
        again = torchspex.explain(f, N, nonfinite="drop", **kwargs)
    # each of the two runs served from the store evaluates one stored mask again (the check
    # that the value function is unchanged), nothing else
    assert again.info["n_model_evaluations"] == 0 and calls["masks"] - before == 2


def test_spectral_interaction_drops_per_example() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model = model.double().eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)[:, 0]
        return torch.where(x[:, 0] > 1.5, float("nan"), out)  # example 1, feature 0 kept

    x = torch.tensor([[1.0] * 10, [2.0] * 10], dtype=torch.float64)
    explainer = torchspex.SpectralInteraction(forward)
    with pytest.raises(ValueError, match="NaN or inf"):
        explainer.attribute(x, method="proxyspex", n_samples=300)
    with pytest.warns(UserWarning, match="left them out"):
        result = explainer.attribute(x, method="proxyspex", n_samples=300, nonfinite="drop")
    infos = result.info["decoder_info"]
    assert infos[0]["n_dropped"] == 0 and infos[1]["n_dropped"] > 100
    with pytest.raises(ValueError, match="needs method='proxyspex'"):
        explainer.attribute(x, method="spex", n_samples=3000, nonfinite="drop")
