"""SpectralInteraction(cache=...): an interrupted run resumes with only the missing passes."""

from pathlib import Path

import pytest
import torch
from torch import nn

from torchspex import SpectralInteraction


class Flaky(nn.Module):
    """An MLP whose forward fails once, on call number `fail_on`, and counts rows."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(10, 8), nn.Tanh(), nn.Linear(8, 2)).double()
        self.fail_on: int | None = None
        self.calls = 0
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("CUDA error: device-side assert")
        self.rows += x.shape[0]
        return self.net(x)


@pytest.mark.parametrize("method", ["exhaustive", "spex"])
def test_resume_after_failure_makes_only_missing_passes(tmp_path: Path, method: str) -> None:
    inputs = torch.randn(2, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kwargs = {"target": 1, "method": method, "perturbations_per_eval": 8, "index": "FSII",
              "max_order": 2}
    if method == "spex":
        kwargs["n_samples"] = 400
    reference_model = Flaky()
    reference = SpectralInteraction(reference_model).attribute(inputs, **kwargs)

    model = Flaky()
    model.fail_on = 4
    path = tmp_path / "attr.sqlite"
    with pytest.raises(RuntimeError, match="device-side assert"):
        SpectralInteraction(model).attribute(inputs, cache=path, **kwargs)
    done_rows = model.rows
    assert done_rows > 0

    model.fail_on = None
    model.rows = 0
    resumed = SpectralInteraction(model).attribute(inputs, cache=path, **kwargs)
    # every mask is evaluated once in total (one stored mask is re-checked: B rows)
    assert done_rows + model.rows == reference_model.rows + inputs.shape[0]
    assert torch.equal(resumed.spectrum.coefficients, reference.spectrum.coefficients)

    # a different target is a different problem: nothing is reused
    model.rows = 0
    SpectralInteraction(model).attribute(inputs, cache=path, **{**kwargs, "target": 0})
    assert model.rows == reference_model.rows
