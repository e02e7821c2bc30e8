"""The catalogue of bad inputs: every public entry point, the mistake, the error users get.

``python -m tests.bad_inputs`` runs every case and prints the Markdown table shown in the
README (the messages are the library's real ones, captured live). ``tests/test_bad_inputs.py``
runs the same cases and checks that each raises the listed error before any model call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import torchspex
from torchspex import BudgetTooSmallError, Interactions, SparseSpectrum


class Recorder:
    """A model / value function that records every call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: torch.Tensor, *args: object) -> torch.Tensor:
        self.calls += 1
        x = torch.as_tensor(x).double()
        return torch.stack([x.sum(1), x[:, 0]], dim=1) if x.dim() == 2 else x.sum()


@dataclass
class Case:
    entry: str
    mistake: str
    error: type[Exception]
    run: Callable[[Recorder], object]
    calls_model: bool = True  # whether the entry point takes a model / value function
    probe: int = 0  # forward passes allowed before the error (on the unmasked inputs)


X = torch.ones(2, 4)
SPEC = SparseSpectrum.from_sets([(), (0,), (0, 1)], [1.0, -0.5, 0.25], 3)


def _explain(**kwargs: object) -> Callable[[Recorder], object]:
    def run(model: Recorder) -> object:
        args = {"method": "exhaustive", **kwargs}
        n = args.pop("n_features", 4)
        f = args.pop("value_function", lambda m: model(m)[:, 0])
        return torchspex.explain(f, n, **args)

    return run


def _attribute(inputs: object = X, **kwargs: object) -> Callable[[Recorder], object]:
    def run(model: Recorder) -> object:
        kwargs.setdefault("method", "exhaustive")
        kwargs.setdefault("target", 0)
        return torchspex.SpectralInteraction(model).attribute(inputs, **kwargs)

    return run


def _tree(**kwargs: object) -> Callable[[Recorder], object]:
    def run(model: Recorder) -> object:
        from sklearn.tree import DecisionTreeRegressor

        rng = np.random.default_rng(0)
        data = rng.normal(size=(50, 4))
        tree = DecisionTreeRegressor(max_depth=3, random_state=0).fit(data, data[:, 0])
        init = {k: kwargs.pop(k) for k in ("masking", "background") if k in kwargs}
        rows = kwargs.pop("inputs", data[:2])
        return torchspex.TreeInteraction(tree, **init).attribute(rows, **kwargs)

    return run


def _batch_result() -> object:
    from torchspex.attr import AttributionInteractions

    coef = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    return AttributionInteractions(SparseSpectrum.from_sets([(), (0,)], coef, 3))


def _unfitted_lightgbm(_: Recorder) -> object:
    import lightgbm

    return torchspex.TreeInteraction(lightgbm.LGBMClassifier()).attribute(np.ones((1, 3)))


def _dtype_mismatch(_: Recorder) -> object:
    model = torch.nn.Linear(4, 2)  # float32 parameters
    return torchspex.SpectralInteraction(model).attribute(
        torch.ones(2, 4, dtype=torch.float64), target=0, method="exhaustive"
    )


def _counted(module: torch.nn.Module, recorder: Recorder) -> torch.nn.Module:
    """``module`` with every forward call counted in ``recorder.calls``."""

    def count(*_: object) -> None:
        recorder.calls += 1

    module.register_forward_pre_hook(count)
    return module


def _device_mismatch(recorder: Recorder) -> object:
    # a CPU-only machine has one real device: "meta" stands in for the model's other device
    model = _counted(torch.nn.Linear(4, 2, device="meta"), recorder)
    return torchspex.SpectralInteraction(model).attribute(X, target=0, method="exhaustive")


def _layer_device_mismatch(recorder: Recorder) -> object:
    from torchspex.llm import LayerSpectralInteraction

    model = _counted(torch.nn.Sequential(torch.nn.Linear(4, 2, device="meta")), recorder)
    return LayerSpectralInteraction(model, model[0]).attribute(X, target=0, method="exhaustive")


class Net(torch.nn.Module):
    """A model whose output is NaN when feature 0 is removed."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.recorder(x)
        return torch.where(x[:, :1] == 0, float("nan"), out)


def _nan_model(recorder: Recorder) -> object:
    return torchspex.SpectralInteraction(Net(recorder)).attribute(X, target=0, method="exhaustive")


CASES: list[Case] = [
    Case("explain", "unknown index name", ValueError, _explain(index="shapley")),
    Case("explain", "`max_order` of 0", ValueError, _explain(max_order=0)),
    Case("explain", "`max_order` above n_features", ValueError, _explain(max_order=5)),
    Case("explain", "`max_order` not an int", TypeError, _explain(max_order=1.5)),
    Case("explain", "unknown method", ValueError, _explain(method="kernelshap")),
    Case("explain", "misspelled index", ValueError, _explain(index="shapely")),
    Case("explain", "misspelled method", ValueError, _explain(method="proxispex")),
    Case("explain", "`batch_size` of 0", ValueError, _explain(batch_size=0)),
    Case("explain", "negative `batch_size`", ValueError, _explain(batch_size=-3)),
    Case("explain", "`feature_names` of the wrong length", ValueError,
         _explain(feature_names=["a", "b"])),
    Case("explain", "`feature_ids` of the wrong length", ValueError,
         _explain(feature_ids=[10, 20, 30])),
    Case("explain", "`n_features` of 0", ValueError, _explain(n_features=0)),
    Case("explain", "`n_samples` of 0", ValueError, _explain(n_samples=0)),
    Case("explain", "too many features for exhaustive", ValueError, _explain(n_features=24)),
    Case("explain", "budget below 2^n for exhaustive", BudgetTooSmallError, _explain(n_samples=8)),
    Case("explain", "budget below SPEX's minimum", BudgetTooSmallError,
         _explain(method="spex", n_features=40, n_samples=50)),
    Case("explain", "ProxySPEX without a budget", ValueError,
         _explain(method="proxyspex", n_features=40)),
    Case("explain", "generator of the wrong type", TypeError, _explain(generator="seed")),
    Case("explain", "value function returns too few values", ValueError,
         _explain(value_function=lambda m: m.sum(1)[:-1])),
    Case("explain", "value function returns NaN", ValueError,
         _explain(value_function=lambda m: torch.where(m[:, 0], float("nan"), 0.0))),
    Case("explain", "`nonfinite='drop'` with SPEX (needs every value)", ValueError,
         _explain(method="spex", n_features=40, n_samples=2000, nonfinite="drop")),
    Case("explain", "value function returns strings", TypeError,
         _explain(value_function=lambda m: np.array(["a"] * m.shape[0]))),
    Case("explain", "value function returns a list of tensors", TypeError,
         _explain(value_function=lambda m: [m.sum(1)])),
    Case("SpectralInteraction.attribute", "baselines that do not broadcast", ValueError,
         _attribute(baselines=torch.zeros(3, 4))),
    Case("SpectralInteraction.attribute", "float feature_mask", TypeError,
         _attribute(feature_mask=torch.zeros(1, 4))),
    Case("SpectralInteraction.attribute", "feature_mask of the wrong shape", ValueError,
         _attribute(feature_mask=torch.zeros(1, 3, dtype=torch.long))),
    Case("SpectralInteraction.attribute", "target out of range (found on the one forward pass "
         "of the unmasked inputs that reveals the output shape)", ValueError,
         _attribute(target=5), probe=1),
    Case("SpectralInteraction.attribute", "one target per example, wrong count", ValueError,
         _attribute(target=[0, 1, 1])),
    Case("SpectralInteraction.attribute", "float target", TypeError, _attribute(target=1.5)),
    Case("SpectralInteraction.attribute", "budget below 2^n for exhaustive", BudgetTooSmallError,
         _attribute(n_samples=10)),
    Case("SpectralInteraction.attribute", "perturbations_per_eval of 0", ValueError,
         _attribute(perturbations_per_eval=0)),
    Case("SpectralInteraction.attribute", "unknown `nonfinite` mode", ValueError,
         _attribute(nonfinite="ignore")),
    Case("SpectralInteraction.attribute", "inputs not a tensor", TypeError,
         _attribute(inputs=[[1.0, 2.0]])),
    Case("SpectralInteraction.attribute", "budget below SPEX's minimum", BudgetTooSmallError,
         _attribute(inputs=torch.ones(1, 40), method="spex", n_samples=48)),
    Case("SpectralInteraction.attribute", "misspelled method", ValueError,
         _attribute(method="SPEXX")),
    Case("SpectralInteraction.attribute", "`additional_forward_args` tensor not of the batch",
         ValueError, _attribute(additional_forward_args=torch.ones(3, 2))),
    Case("SpectralInteraction.attribute", "`additional_forward_args` as a list of tensors",
         TypeError, _attribute(additional_forward_args=[torch.ones(2)])),
    Case("SpectralInteraction.attribute", "float64 inputs for a float32 model (found on the "
         "first forward pass)", TypeError, _dtype_mismatch),
    Case("SpectralInteraction.attribute", "inputs with a zero-size feature dimension",
         ValueError, _attribute(inputs=torch.ones(2, 0))),
    Case("SpectralInteraction.attribute", "model's parameters on another device than the "
         "inputs ('meta' stands in for a GPU)", ValueError, _device_mismatch),
    Case("SpectralInteraction.attribute", "per-example targets as a tuple `(0, 1)` (found on "
         "the one forward pass of the unmasked inputs that reveals the output shape)",
         ValueError, _attribute(target=(0, 1)), probe=1),
    Case("SpectralInteraction.attribute", "model returns NaN (found on the first forward pass)",
         ValueError, _nan_model, probe=1),
    Case("LayerSpectralInteraction.attribute", "model's parameters on another device than the "
         "inputs", ValueError, _layer_device_mismatch),
    Case("SparseSpectrum", "feature index >= n_features", ValueError,
         lambda _: SparseSpectrum(torch.tensor([[3]]), torch.ones(1), 3), calls_model=False),
    Case("SparseSpectrum", "float indices", TypeError,
         lambda _: SparseSpectrum(torch.tensor([[0.0]]), torch.ones(1), 3), calls_model=False),
    Case("Interactions", "a Möbius spectrum where Fourier is required", ValueError,
         lambda _: Interactions(SPEC.replace(basis="Moebius")), calls_model=False),
    Case("Interactions.top_k", "negative k", ValueError,
         lambda _: Interactions(SPEC).top_k(-1), calls_model=False),
    Case("Interactions.to_index", "unknown index", ValueError,
         lambda _: Interactions(SPEC).to_index("CHI"), calls_model=False),
    Case("AttributionInteractions.top_k", "a batch of several examples (no single ranking)",
         ValueError,
         lambda _: _batch_result().top_k(5), calls_model=False),
    Case("Interactions.optimize", "more features kept than exist", ValueError,
         lambda _: Interactions(SPEC).optimize(n_kept=4), calls_model=False),
    Case("TreeInteraction", "unknown masking", ValueError, _tree(masking="marginal"),
         calls_model=False),
    Case("TreeInteraction.attribute", "rows with the wrong number of features", ValueError,
         _tree(inputs=np.ones((2, 3))), calls_model=False),
    Case("TreeInteraction.attribute", "an unfitted LightGBM model", ValueError,
         _unfitted_lightgbm, calls_model=False),
]


def outcome(case: Case) -> tuple[Exception | None, int]:
    """Runs one case: the exception it raised (or None) and how many model calls it made."""
    model = Recorder()
    try:
        case.run(model)
    except Exception as err:
        return err, model.calls
    return None, model.calls


def markdown() -> str:
    rows = ["| entry point | mistake | error users get |", "|---|---|---|"]
    for case in CASES:
        err, _ = outcome(case)
        text = "(no error!)" if err is None else f"`{type(err).__name__}`: {err}"
        text = text.replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{case.entry}` | {case.mistake} | {text} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
