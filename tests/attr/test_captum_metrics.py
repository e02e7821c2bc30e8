"""Captum's metrics and wrappers on SpectralInteraction through `as_captum()`, against Captum.

Oracle: `captum.attr.ShapleyValues` (exact, all permutations) on the same model, while our side
runs `method="exhaustive"` (exact Shapley values too); both paths draw their noise from the
global RNG, seeded the same before each call. Captum's ShapleyValues accumulates in float32,
so attributions agree to ~1e-7 (compared at 1e-6); sensitivity_max divides a difference of
attributions by their norm, which magnifies that to a few 1e-7 relative (compared at 1e-5
relative, with a radius of 0.5 so the difference is not tiny).
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from captum.attr import NoiseTunnel, ShapleyValues
from captum.metrics import infidelity, sensitivity_max

from torchspex import SpectralInteraction
from torchspex.attr.result import AttributionInteractions
from torchspex.attr.spectral_interaction import FirstOrderAttribution
from torchspex.llm import LayerSpectralInteraction

EXACT = {"method": "exhaustive"}
TOL = {"atol": 1e-6, "rtol": 1e-6}
RATIO_TOL = {"atol": 1e-6, "rtol": 1e-5}  # sensitivity_max: a ratio of float32 norms


class Counting(torch.nn.Module):
    """The model, counting its forward calls."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.n_calls = 0

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.n_calls += 1
        return self.model(torch.cat(inputs, dim=1) if len(inputs) > 1 else inputs[0])


def _model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return net.to(dtype).eval()


def _x(seed: int, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    noise = 0.1 * torch.randn_like(inputs)  # the global RNG, seeded by the test
    return noise, inputs - noise


def _seeded(seed: int, fn, *args, **kwargs):
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


# ---------------------------------------------------------------------- the documented form
def test_as_captum_returns_first_order_shapley_values_as_captum_does():
    model = _model()
    x = _x(1, 3, 5)
    explainer = SpectralInteraction(model)
    ours = explainer.as_captum().attribute(x, target=1, **EXACT)
    result = explainer.attribute(x, target=1, index="SV", **EXACT)
    assert isinstance(explainer.as_captum(), FirstOrderAttribution)
    assert torch.equal(ours, result.first_order("SV"))
    assert ours.shape == x.shape and ours.dtype == x.dtype
    torch.testing.assert_close(ours, ShapleyValues(model).attribute(x, target=1), **TOL)
    attr, delta = explainer.as_captum().attribute(x, target=1, return_convergence_delta=True,
                                                  **EXACT)  # fmt: skip
    assert torch.equal(attr, ours)
    assert torch.equal(delta, result.convergence_delta) and delta.shape == (3,)


def test_as_captum_keeps_tuples_dtypes_and_other_indices():
    model = _model()
    pair = (_x(2, 2, 3), _x(3, 2, 2))
    ours = SpectralInteraction(Counting(model)).as_captum().attribute(pair, target=0, **EXACT)
    theirs = ShapleyValues(Counting(model)).attribute(pair, target=0)
    assert isinstance(ours, tuple) and len(ours) == 2
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **TOL)
    x = _x(4, 2, 5, dtype=torch.float64)
    model = model.double()
    double = SpectralInteraction(model).as_captum().attribute(x, target=2, **EXACT)
    assert double.dtype == torch.float64  # Captum's ShapleyValues would give float32 here
    banzhaf = SpectralInteraction(model).as_captum("BV").attribute(x, target=2, **EXACT)
    expected = SpectralInteraction(model).attribute(x, target=2, **EXACT).first_order("BV")
    torch.testing.assert_close(banzhaf, expected)


def test_infidelity_matches_captum_shapley_values():
    model = _model()
    x = _x(5, 4, 5)
    ours = SpectralInteraction(model).as_captum().attribute(x, target=1, **EXACT)
    theirs = ShapleyValues(model).attribute(x, target=1)
    for normalize in (False, True):
        a = _seeded(7, infidelity, model, _perturb, x, ours, target=1, n_perturb_samples=5,
                    normalize=normalize)  # fmt: skip
        b = _seeded(7, infidelity, model, _perturb, x, theirs, target=1, n_perturb_samples=5,
                    normalize=normalize)  # fmt: skip
        assert a.shape == (4,)
        torch.testing.assert_close(a, b, **TOL)


def test_infidelity_on_tuple_inputs():
    model = _model()
    pair = (_x(8, 2, 3), _x(9, 2, 2))
    fwd = Counting(model)
    ours = SpectralInteraction(fwd).as_captum().attribute(pair, target=1, **EXACT)
    theirs = ShapleyValues(fwd).attribute(pair, target=1)

    def perturb(inputs):
        a, b = inputs
        na, nb = 0.1 * torch.randn_like(a), 0.1 * torch.randn_like(b)
        return (na, nb), (a - na, b - nb)

    a = _seeded(3, infidelity, fwd, perturb, pair, ours, target=1, n_perturb_samples=3)
    b = _seeded(3, infidelity, fwd, perturb, pair, theirs, target=1, n_perturb_samples=3)
    torch.testing.assert_close(a, b, **TOL)


def test_sensitivity_max_matches_captum_shapley_values():
    model = _model()
    x = _x(10, 3, 5)
    shapley = SpectralInteraction(model).as_captum()
    kw = {"target": 1, "n_perturb_samples": 4, "perturb_radius": 0.5}
    a = _seeded(11, sensitivity_max, shapley.attribute, x, **kw, **EXACT)
    b = _seeded(11, sensitivity_max, ShapleyValues(model).attribute, x, **kw)
    assert a.shape == (3,) and bool((a > 0).all())
    torch.testing.assert_close(a, b, **RATIO_TOL)


def test_sensitivity_max_on_tuple_inputs():
    fwd = Counting(_model())
    pair = (_x(12, 2, 3), _x(13, 2, 2))
    kw = {"target": 0, "n_perturb_samples": 3, "perturb_radius": 0.5}
    a = _seeded(5, sensitivity_max, SpectralInteraction(fwd).as_captum().attribute, pair, **kw,
                **EXACT)  # fmt: skip
    b = _seeded(5, sensitivity_max, ShapleyValues(fwd).attribute, pair, **kw)
    torch.testing.assert_close(a, b, **RATIO_TOL)


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_matches_captum_shapley_values(nt_type):
    model = _model()
    x = _x(14, 2, 5)
    shapley = SpectralInteraction(model).as_captum()
    kw = {"nt_type": nt_type, "nt_samples": 4, "stdevs": 0.2, "target": 1}
    a = _seeded(15, NoiseTunnel(shapley).attribute, x, **kw, **EXACT)
    b = _seeded(15, NoiseTunnel(ShapleyValues(model)).attribute, x, **kw)
    assert a.shape == x.shape and a.dtype == x.dtype
    torch.testing.assert_close(a, b, **TOL)


def test_noise_tunnel_tuples_batches_and_convergence_delta():
    fwd = Counting(_model())
    pair = (_x(16, 2, 3), _x(17, 2, 2))
    shapley = SpectralInteraction(fwd).as_captum()
    kw = {"nt_samples": 5, "nt_samples_batch_size": 2, "stdevs": 0.1, "target": 2}
    a = _seeded(18, NoiseTunnel(shapley).attribute, pair, **kw, **EXACT)
    b = _seeded(18, NoiseTunnel(ShapleyValues(fwd)).attribute, pair, **kw)
    assert isinstance(a, tuple)
    for ours, theirs in zip(a, b):
        torch.testing.assert_close(ours, theirs, **TOL)
    attr, delta = _seeded(18, NoiseTunnel(shapley).attribute, pair, **kw,
                          return_convergence_delta=True, **EXACT)  # fmt: skip
    for ours, same in zip(attr, a):
        torch.testing.assert_close(ours, same)
    assert delta.shape == (5 * 2,) and float(delta.abs().max()) < 1e-9  # exhaustive: exact


def test_noise_tunnel_on_the_explainer_itself_gives_the_same_values():
    """`NoiseTunnel(explainer)` (the older form) routes to the same code as `as_captum()`."""
    model = _model()
    x = _x(19, 2, 5)
    explainer = SpectralInteraction(model)
    a = _seeded(20, NoiseTunnel(explainer).attribute, x, nt_samples=3, target=1, **EXACT)
    b = _seeded(20, NoiseTunnel(explainer.as_captum()).attribute, x, nt_samples=3, target=1,
                **EXACT)  # fmt: skip
    assert torch.equal(a, b)


def test_as_captum_signature_and_protocol():
    explainer = SpectralInteraction(_model())
    shapley = explainer.as_captum()
    params = inspect.signature(shapley.attribute).parameters
    assert list(params)[:5] == [
        "inputs", "baselines", "target", "additional_forward_args", "feature_mask",
    ]  # fmt: skip
    assert "return_convergence_delta" in params and "index" not in params
    assert "index" in inspect.signature(explainer.attribute).parameters  # help() unchanged
    assert shapley.has_convergence_delta() and shapley.forward_func is explainer.forward_func
    assert shapley.index == "SV" and explainer.as_captum("BV").index == "BV"
    with pytest.raises(ValueError, match="`index` must be one of"):
        explainer.as_captum("nope")
    with pytest.raises(NotImplementedError):
        shapley.attribute_future(torch.ones(1, 5))
    with pytest.raises(TypeError, match="SpectralInteraction"):
        FirstOrderAttribution(_model())


# ---------------------------------------------------------------------- wrong forms fail first
def test_sensitivity_max_of_attribute_fails_before_any_forward_pass():
    fwd = Counting(_model())
    explainer = SpectralInteraction(fwd)
    with pytest.raises(TypeError, match=r"as_captum\(\)\.attribute") as err:
        sensitivity_max(explainer.attribute, _x(21, 2, 5), target=1, **EXACT)
    assert fwd.n_calls == 0
    message = str(err.value)
    assert message.startswith("captum.metrics.sensitivity_max called `SpectralInteraction")
    assert 'first_order("SV")' in message and "NoiseTunnel(explainer.as_captum())" in message


def test_infidelity_of_a_result_fails_before_any_forward_pass():
    fwd = Counting(_model())
    x = _x(22, 2, 5)
    result = SpectralInteraction(fwd).attribute(x, target=1, **EXACT)
    calls = fwd.n_calls
    with pytest.raises(TypeError, match=r'result\.first_order\("SV"\)') as err:
        infidelity(fwd, _perturb, x, result, target=1)
    assert fwd.n_calls == calls
    assert str(err.value).startswith("captum.metrics.infidelity needs attribution tensors")
    score = infidelity(fwd, _perturb, x, result.first_order("SV"), target=1)  # the fix works
    assert score.shape == (2,)


def test_the_result_is_still_an_ordinary_object_outside_captum():
    result = SpectralInteraction(_model()).attribute(_x(23, 1, 5), target=0, **EXACT)
    assert isinstance(result, AttributionInteractions) and not isinstance(result, tuple)
    assert result.__class__ is AttributionInteractions
    clone = copy.deepcopy(result)
    torch.testing.assert_close(clone.first_order("SV"), result.first_order("SV"))


def test_as_captum_rejects_index_before_any_forward_pass():
    fwd = Counting(_model())
    with pytest.raises(TypeError, match=r"as_captum\('FBII'\)"):
        SpectralInteraction(fwd).as_captum().attribute(_x(24, 1, 5), index="FBII")
    assert fwd.n_calls == 0


# ---------------------------------------------------------------------- layers
def _layer_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Identity(), *_model())


def test_layer_as_captum_under_noise_tunnel_matches_captum():
    """At an identity first layer the layer's Shapley values are the inputs' ones."""
    model = _layer_model()
    x = _x(25, 2, 5)
    shapley = LayerSpectralInteraction(model, model[0]).as_captum()
    plain = shapley.attribute(x, target=1, **EXACT)
    torch.testing.assert_close(plain, ShapleyValues(model).attribute(x, target=1), **TOL)
    kw = {"nt_samples": 3, "stdevs": 0.2, "target": 1}
    a = _seeded(26, NoiseTunnel(shapley).attribute, x, **kw, **EXACT)
    b = _seeded(26, NoiseTunnel(ShapleyValues(model)).attribute, x, **kw)
    torch.testing.assert_close(a, b, **TOL)


def test_layer_as_captum_is_shaped_like_the_activation():
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Flatten(1), torch.nn.Linear(6, 1),
                                torch.nn.Flatten(0))  # fmt: skip
    x = _x(27, 2, 3, 2)
    mask = torch.tensor([[[0, 0], [1, -1], [2, 2]]])
    explainer = LayerSpectralInteraction(model, model[0])
    ours = explainer.as_captum().attribute(x, layer_mask=mask, **EXACT)
    sv = explainer.attribute(x, layer_mask=mask, index="SV", **EXACT).first_order("SV")
    assert ours.shape == x.shape and ours.dtype == x.dtype
    expected = sv.float()[:, mask.clamp(min=0)[0]]
    expected[:, 1, 1] = 0.0  # outside every group
    torch.testing.assert_close(ours, expected)


def test_layer_wrong_forms_fail_before_any_forward_pass():
    fwd = Counting(_layer_model())
    explainer = LayerSpectralInteraction(fwd, fwd.model[0])
    with pytest.raises(TypeError, match=r"NoiseTunnel\(explainer\.as_captum\(\)\)"):
        sensitivity_max(explainer.attribute, _x(28, 2, 5), target=1)
    with pytest.raises(AttributeError, match=r"NoiseTunnel\(explainer\.as_captum\(\)\)"):
        NoiseTunnel(explainer)
    with pytest.raises(TypeError, match="return_convergence_delta"):
        explainer.as_captum().attribute(_x(28, 2, 5), return_convergence_delta=True)
    assert fwd.n_calls == 0
