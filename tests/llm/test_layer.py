from __future__ import annotations

import pytest
import torch
from torch import nn

from torchspex.decoders.exhaustive import all_masks
from torchspex.llm import LayerSpectralInteraction, LayerSweep, sweep_layers, transformer_blocks


class Toy(nn.Module):
    """[B, L, D] -> [B, 2]: a nonlinear readout so positions interact."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.embed = nn.Linear(3, 4)
        self.mix = nn.Linear(4, 4)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g)

    def forward(self, x, scale=1.0):
        h = self.embed(x)
        return torch.tanh(self.mix(h)).prod(dim=1)[:, :2] * scale


@pytest.fixture(scope="module")
def toy():
    g = torch.Generator().manual_seed(1)
    return Toy().eval(), torch.randn(2, 4, 3, generator=g)


def manual_values(model, x, groups, baseline, masks):
    """Masks the embed output by hand: ``[m, B, 2]``."""
    with torch.no_grad():
        h = model.embed(x)
        out = []
        for mask in masks:
            keep = mask[groups.clamp_min(0)] | (groups < 0)
            hh = torch.where(keep, h, baseline)
            out.append(torch.tanh(model.mix(hh)).prod(dim=1)[:, :2])
    return torch.stack(out).double()


def test_exhaustive_matches_manual_masking_per_position(toy):
    model, x = toy
    result = LayerSpectralInteraction(model, model.embed).attribute(
        x, layer_baselines=0.5, method="exhaustive", index="Moebius", perturbations_per_eval=3
    )
    masks = all_masks(4)
    groups = torch.arange(4).view(1, 4, 1)
    expected = manual_values(model, x, groups, 0.5, masks)
    assert result.out_shape == (2, 2) and result.n_evaluations == 16
    torch.testing.assert_close(result.predict(masks), expected, atol=1e-6, rtol=0)


def test_layer_mask_groups_gaps_and_never_masked(toy):
    model, x = toy
    layer_mask = torch.tensor([[7, -1, 7, 3]]).unsqueeze(-1)  # 2 groups, position 1 always kept
    result = LayerSpectralInteraction(model, model.embed).attribute(
        x, target=1, layer_mask=layer_mask, method="exhaustive"
    )
    assert result.feature_ids == (3, 7) and result.out_shape == (2,)
    groups = torch.tensor([[1, -1, 1, 0]]).unsqueeze(-1)
    expected = manual_values(model, x, groups, 0.0, all_masks(2))[..., 1]
    torch.testing.assert_close(result.predict(all_masks(2)), expected, atol=1e-6, rtol=0)


def test_matches_captum_layer_feature_ablation(toy):
    captum_attr = pytest.importorskip("captum.attr")
    model, x = toy
    layer_mask = torch.arange(4).view(1, 4, 1)
    captum = captum_attr.LayerFeatureAblation(model, model.embed).attribute(
        x, target=0, layer_mask=layer_mask
    )  # [B, 4, 4]: each position's value broadcast over the hidden dim
    ours = LayerSpectralInteraction(model, model.embed).attribute(
        x, target=0, layer_mask=layer_mask, method="exhaustive"
    )
    drop_one = ~torch.eye(4, dtype=torch.bool)
    ablation = (ours.full_value - ours.predict(drop_one)).T  # [B, 4]
    torch.testing.assert_close(ablation.float(), captum[..., 0], atol=1e-5, rtol=0)


def test_per_example_target_additional_args_and_batching_invariance(toy):
    model, x = toy
    explainer = LayerSpectralInteraction(model, model.embed)
    kwargs = {"target": [1, 0], "additional_forward_args": (2.0,), "method": "exhaustive"}
    one = explainer.attribute(x, perturbations_per_eval=1, **kwargs)
    many = explainer.attribute(x, perturbations_per_eval=16, **kwargs)
    torch.testing.assert_close(one.spectrum.coefficients, many.spectrum.coefficients)
    expected = 2.0 * manual_values(model, x, torch.arange(4).view(1, 4, 1), 0.0, all_masks(4))
    expected = torch.stack([expected[:, 0, 1], expected[:, 1, 0]], dim=1)
    torch.testing.assert_close(one.predict(all_masks(4)), expected, atol=1e-6, rtol=0)


class KwargsBlock(nn.Module):
    def forward(self, hidden_states, *, bias=None, cache=None):
        return hidden_states + bias, None, "not a tensor"


class KwargsModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = KwargsBlock()

    def forward(self, x):
        h, none, text = self.block(hidden_states=x, bias=torch.ones(1), cache=object())
        assert none is None and text == "not a tensor"
        return (h**2).sum(dim=(1, 2)).unsqueeze(1)


@pytest.mark.parametrize("to_input", [False, True])
def test_hooks_pass_kwargs_and_non_tensor_outputs_through(to_input):
    model = KwargsModel()
    x = torch.tensor([[[1.0], [2.0]]])
    result = LayerSpectralInteraction(model, model.block).attribute(
        x, target=0, attribute_to_layer_input=to_input, method="exhaustive", index="Moebius"
    )
    # output masked: (2^2 + 3^2) with removed positions -> 0; input masked: (x + 1)^2 -> 1.
    full, empty = 13.0, (0.0 if not to_input else 2.0)
    torch.testing.assert_close(torch.as_tensor(result.full_value).double(),
                               torch.tensor([full], dtype=torch.float64))
    torch.testing.assert_close(torch.as_tensor(result.baseline_value).double(),
                               torch.tensor([empty], dtype=torch.float64))


def test_gpt2_block_input_equals_previous_block_output(gpt2, gpt2_tokenizer):
    ids = torch.tensor([gpt2_tokenizer.encode("Paris is the capital of France")])

    def forward(input_ids):
        return gpt2(input_ids=input_ids).logits[:, -1].log_softmax(-1)

    blocks = [m for _, m in transformer_blocks(gpt2)]
    common = {"target": 5, "method": "exhaustive", "perturbations_per_eval": 8}
    mask = torch.full((ids.shape[1],), -1)
    mask[:5] = torch.tensor([0, 0, 1, 2, 3])
    mask = mask.view(1, -1, 1)
    out0 = LayerSpectralInteraction(forward, blocks[0]).attribute(ids, layer_mask=mask, **common)
    in1 = LayerSpectralInteraction(forward, blocks[1]).attribute(
        ids, layer_mask=mask, attribute_to_layer_input=True, **common
    )
    torch.testing.assert_close(out0.spectrum.coefficients, in1.spectrum.coefficients,
                               atol=1e-5, rtol=0)


def test_sweep_one_result_per_block_with_same_masks(gpt2, gpt2_tokenizer):
    ids = torch.tensor([gpt2_tokenizer.encode("Paris is the capital")])

    def forward(input_ids):
        return gpt2(input_ids=input_ids).logits[:, -1].log_softmax(-1)

    names = [n for n, _ in transformer_blocks(gpt2)]
    assert names == [f"transformer.h.{i}" for i in range(gpt2.config.n_layer)]
    sweep = sweep_layers(forward, gpt2, ids, target=3, method="exhaustive",
                         perturbations_per_eval=16)
    assert isinstance(sweep, LayerSweep) and len(sweep) == gpt2.config.n_layer
    assert sweep.layer_names == names
    n_positions = ids.shape[1]
    assert sweep.first_order("SV").shape == (gpt2.config.n_layer, 1, n_positions)
    assert all(r.n_evaluations == 2**n_positions for r in sweep)
    fig, ax = sweep.plot(output=(0,))
    assert ax in fig.axes and len(ax.get_images()) + len(ax.collections) >= 1


def test_llm_attribute_layers(gpt2, gpt2_tokenizer):
    from torchspex.grouping import text_features
    from torchspex.llm import LLMSpectralInteraction

    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    feats = text_features("Q: Paris is the capital", gpt2_tokenizer, regions=["Paris is the"])
    sweep = explainer.attribute_layers(feats, " of", method="exhaustive")
    assert len(sweep) == gpt2.config.n_layer and sweep.feature_names == ["Paris", "is", "the"]
    n_target = sweep[0].target_ids.numel()
    assert sweep.first_order().shape == (gpt2.config.n_layer, 1 + n_target, 3)
    # After the last block only the last prompt position ("capital", never masked) reaches the
    # target, so that layer shows no effect at all; earlier layers do.
    assert float(sweep.first_order()[-1].abs().max()) < 1e-6
    assert float(sweep.first_order()[0].abs().max()) > 1e-3
    # Every result keeps the full-prompt value: nothing is masked when all features are kept.
    full = explainer.attribute(feats, " of", method="exhaustive").full_value
    for result in sweep:
        torch.testing.assert_close(torch.as_tensor(result.full_value), full, atol=1e-5, rtol=0)
    # blocks given as modules are named by their places in the model, not by their positions
    one = explainer.attribute_layers(feats, " of", layers=[gpt2.transformer.h[1]],
                                     method="exhaustive")  # fmt: skip
    assert one.layer_names == ["transformer.h.1"]
    torch.testing.assert_close(one[0].spectrum.coefficients, sweep[1].spectrum.coefficients)
    # an LLM sweep plots the sequence log-probability by default (its values are vectors)
    pytest.importorskip("matplotlib")
    _, ax = sweep.plot()
    assert ax.get_images()[0].get_array().shape == (gpt2.config.n_layer, 3)
    assert ax.get_title() == "SV of the sequence log-probability"
    _, ax = sweep.plot(output=(1,))
    assert ax.get_title().startswith("SV for target token")


def test_errors(toy):
    model, x = toy
    explainer = LayerSpectralInteraction(model, model.embed)
    with pytest.raises(TypeError, match="layer"):
        LayerSpectralInteraction(model, "embed")
    with pytest.raises(ValueError, match="layer_mask"):
        explainer.attribute(x, layer_mask=torch.zeros(4, dtype=torch.long), method="exhaustive")
    with pytest.raises(TypeError, match="integer"):
        explainer.attribute(x, layer_mask=torch.zeros(1, 4, 1), method="exhaustive")
    with pytest.raises(ValueError, match="layer_baselines"):
        explainer.attribute(x, layer_baselines=torch.zeros(5), method="exhaustive")
    with pytest.raises(ValueError, match="not called"):
        LayerSpectralInteraction(model, nn.Linear(2, 2)).attribute(x, method="exhaustive")
    with pytest.raises(ValueError, match="one target per example"):
        explainer.attribute(x, target=[0], method="exhaustive")
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        explainer.attribute(x, perturbations_per_eval=0, method="exhaustive")


def test_show_progress_counts_masks_per_forward_and_ends_at_100(toy, capsys, monkeypatch):
    from torchspex.decoders.base import Progress

    model, x = toy
    ticks: list[int] = []
    update = Progress.update
    monkeypatch.setattr(Progress, "update", lambda self, n: (ticks.append(n), update(self, n)))
    LayerSpectralInteraction(model, model.embed).attribute(
        x, method="exhaustive", perturbations_per_eval=3, show_progress=True
    )
    err = capsys.readouterr().err
    assert "Layer Spectral Interaction attribution" in err
    assert "100%" in err and "16/16" in err
    assert [t for t in ticks if t] == [3, 3, 3, 3, 3, 1]  # one tick per forward pass


def test_additional_forward_args_of_another_batch_fail_before_any_forward(toy):
    model, x = toy
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"dim 0 = the batch size \(2\)"):
            LayerSpectralInteraction(model, model.embed).attribute(
                x, additional_forward_args=(torch.ones(3),), method="exhaustive",
                layer_mask=torch.arange(4).view(1, 4, 1),
            )  # fmt: skip
    finally:
        hook.remove()
    assert calls == []


def test_a_layer_run_twice_per_forward_and_a_bad_target_raise(toy):
    # a module applied twice had its first call's masked activation put in place of both
    # (full_value -0.112 where the model gives -0.011); an out-of-range target was a raw
    # IndexError
    model, x = toy
    shared = nn.Tanh()

    def twice(inp):
        return shared(shared(model.embed(inp))).sum(dim=(1, 2)).unsqueeze(1)

    with pytest.raises(ValueError, match="runs 2 times in one forward pass"):
        LayerSpectralInteraction(twice, shared).attribute(x, method="exhaustive", target=0)
    with pytest.raises(ValueError, match=r"out of range for the model's output of shape \(2,\)"):
        LayerSpectralInteraction(model, model.embed).attribute(x, method="exhaustive", target=5)
