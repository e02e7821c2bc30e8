"""The default index serves the Shapley values users read first, and cross-family reads warn."""

from __future__ import annotations

import warnings

import pytest
import torch

import torchspex
from torchspex import SparseSpectrum
from torchspex.interactions import Interactions


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).double().eval()


def _attribute(**kwargs: object) -> torchspex.attr.AttributionInteractions:
    x = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(2, 10)
    if kwargs.get("method") != "exhaustive":
        kwargs.setdefault("n_samples", 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchspex.SpectralInteraction(_mlp()).attribute(x, target=0, generator=3, **kwargs)


def _exact_sv() -> torch.Tensor:
    return _attribute(method="exhaustive").first_order("SV")


def test_default_index_is_k_sii_everywhere() -> None:
    import inspect

    from torchspex.llm import LayerSpectralInteraction, LLMSpectralInteraction

    entries = [torchspex.explain, torchspex.SpectralInteraction.attribute, Interactions.__init__,
               LLMSpectralInteraction.attribute, LayerSpectralInteraction.attribute]  # fmt: skip
    for entry in entries:
        assert inspect.signature(entry).parameters["index"].default == "k-SII", entry


def test_default_shapley_values_are_those_of_index_sv() -> None:
    default, sv = _attribute(), _attribute(index="SV")
    assert default.index == "k-SII" and default.design_family() == "shapley"
    # the same design and fit: bitwise the Shapley values a user asking for them gets
    assert torch.equal(default.first_order("SV"), sv.first_order("SV"))
    exact = _exact_sv()
    err = float((default.first_order("SV") - exact).norm() / exact.norm())
    assert err < 0.02  # 200 calls for 10 features of a smooth MLP: close to exact
    assert torch.allclose(default.first_order("SV").sum(-1), exact.sum(-1), atol=1e-12)


def test_reading_the_other_family_warns_once_naming_the_index() -> None:
    fbii = _attribute(index="FBII")
    assert fbii.design_family() == "banzhaf"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fbii.first_order("SV")
        fbii.first_order("SV")
        fbii.to_index("k-SII")
    assert len(record) == 1
    assert "banzhaf design" in str(record[0].message)
    assert "pass index='SV'" in str(record[0].message)
    default = _attribute()
    with pytest.warns(UserWarning, match=r"reading BV .* pass index='BV'"):
        default.first_order("BV")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fbii.first_order("BV")  # same family: silent
        default.to_index("FSII", 2).first_order("SV")
        fbii.select(0).to_index("FBII")


def test_no_warning_where_the_design_does_not_depend_on_the_index() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = _attribute(method="exhaustive", index="FBII")
        assert exact.design_family() is None
        exact.first_order("SV")
        spec = SparseSpectrum.from_sets([(), (0,), (0, 1)], [1.0, -0.5, 0.25], 2)
        Interactions(spec, index="FBII").first_order("SV")
        assert Interactions(spec).index == "k-SII"


def test_explain_records_the_design_family() -> None:
    def game(masks: torch.Tensor) -> torch.Tensor:
        x = masks.double()
        return 2.0 * x[:, 0] * x[:, 1] - x[:, 2] + 0.5 * x[:, 3] * x[:, 4] * x[:, 5]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = torchspex.explain(game, 12, n_samples=300)
    assert res.index == "k-SII" and res.design_family() == "shapley"
    sv = res.first_order("SV")
    # exact here (a sparse game): efficiency and the planted pair's split
    assert float(sv.sum()) == pytest.approx(2.0 - 1.0 + 0.5, abs=1e-9)
    assert float(sv[0]) == pytest.approx(1.0, abs=1e-9)
