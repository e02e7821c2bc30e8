"""``cache=`` and ``process_group=`` on the LLM and layer helpers (issues 11 and 12)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from torchspex.decoders.exhaustive import all_masks
from torchspex.grouping import text_features
from torchspex.llm import LayerSpectralInteraction, LLMSpectralInteraction, transformer_blocks

PROMPT = "Paris is the capital of"  # 5 words: exhaustive = 32 masks
TARGET = " France."
BATCH = 4  # 8 forward calls for the exhaustive run


class ForwardCounter:
    """Counts the model's forward calls and rows; raises on call ``fail_at`` (0-based) if set."""

    def __init__(self, model: torch.nn.Module, fail_at: int | None = None) -> None:
        self.calls, self.rows, self.fail_at = 0, 0, fail_at
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("CUDA error: device lost")
        x = args[0] if args else kwargs["input_ids"]
        self.calls += 1
        self.rows += int(x.shape[0])

    def __enter__(self) -> ForwardCounter:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def attribute(explainer, prompt=PROMPT, target=TARGET, baseline="remove", **kwargs):
    """The prompt's words are the features; the prefix "Q: " is always kept."""
    feats = text_features("Q: " + prompt, explainer.tokenizer, regions=[prompt], baseline=baseline)
    kwargs = {"method": "exhaustive", "perturbations_per_eval": BATCH, **kwargs}
    return explainer.attribute(feats, target=target, **kwargs)


def test_interrupted_llm_run_resumes_with_only_the_missing_forward_passes(
    gpt2, gpt2_tokenizer, tmp_path: Path
) -> None:
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    reference = attribute(explainer)
    path = tmp_path / "llm.sqlite"
    k = 3  # forward batches that complete before the failure
    with ForwardCounter(gpt2, fail_at=k), pytest.raises(RuntimeError, match="device lost") as err:
        attribute(explainer, cache=path)
    assert f"after {k * BATCH} successful evaluations" in "".join(err.value.__notes__)
    with ForwardCounter(gpt2) as count:
        resumed = attribute(explainer, cache=path, show_progress=False)
    remaining = 32 - k * BATCH
    assert resumed.info["n_cached"] == k * BATCH
    assert resumed.info["n_model_evaluations"] == remaining
    assert count.calls == remaining // BATCH  # no extra forward pass ...
    assert count.rows == remaining + 1  # ... one stored mask re-checked inside the first batch
    assert resumed.n_evaluations == reference.n_evaluations == 32
    # the resumed masks ran in other batch compositions than the reference's: a float32 model
    # may round them differently in the last bit, so equal up to that
    torch.testing.assert_close(
        resumed.spectrum.coefficients, reference.spectrum.coefficients, rtol=1e-5, atol=1e-7
    )
    assert resumed.feature_names == reference.feature_names == PROMPT.split()
    assert resumed.output_tokens == reference.output_tokens
    # a third identical call (now with a progress bar) is served from the store entirely, but
    # for one forward pass of one stored mask that checks the model is still the same
    with ForwardCounter(gpt2) as count:
        again = attribute(explainer, cache=path, show_progress=True)
    assert count.calls == 1 and count.rows == 1 and again.info["n_model_evaluations"] == 0
    assert torch.equal(again.spectrum.coefficients, resumed.spectrum.coefficients)


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "Rome is the capital of"},  # same words count, other prompt
        {"target": " Italy."},
        {"target": [5, 6]},
        {"baseline": 3},  # removed words become token 3 instead of disappearing
        {"generator": 1},  # exhaustive ignores it, but the fingerprint must not
    ],
    ids=["prompt", "target", "target-ids", "baseline", "seed"],
)
def test_changed_problem_never_reuses_stored_values(
    gpt2, gpt2_tokenizer, tmp_path: Path, change
) -> None:
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    path = tmp_path / "llm.sqlite"
    first = attribute(explainer, cache=path)
    assert first.info["n_model_evaluations"] == 32 and first.info["n_cached"] == 0
    with ForwardCounter(gpt2) as count:
        changed = attribute(explainer, cache=path, **change)
    assert changed.info["n_cached"] == 0
    assert changed.info["n_model_evaluations"] == 32 and count.rows == 32
    if "generator" not in change:  # the values really differ: stale reuse would show
        every = all_masks(5)
        a, b = first.predict(every), changed.predict(every)
        assert a.shape != b.shape or not torch.allclose(a, b)


def test_attr_target_and_weights_are_in_the_fingerprint(gpt2, gpt2_tokenizer, tmp_path: Path):
    path = tmp_path / "llm.sqlite"
    attribute(LLMSpectralInteraction(gpt2, gpt2_tokenizer), cache=path)
    prob = attribute(LLMSpectralInteraction(gpt2, gpt2_tokenizer, "prob"), cache=path)
    assert prob.info["n_cached"] == 0
    other = type(gpt2)(gpt2.config).eval()  # same class and config, other random weights
    fresh = attribute(LLMSpectralInteraction(other, gpt2_tokenizer), cache=path)
    assert fresh.info["n_cached"] == 0 and fresh.info["n_model_evaluations"] == 32


def layer_setup(gpt2, gpt2_tokenizer):
    ids = torch.tensor([gpt2_tokenizer.encode("Paris is the capital of France")])
    mask = torch.full((ids.shape[1],), -1)
    mask[:5] = torch.tensor([0, 0, 1, 2, 3])

    def forward(input_ids):
        return gpt2(input_ids=input_ids).logits[:, -1].log_softmax(-1)

    block = transformer_blocks(gpt2)[1][1]
    return ids, mask.view(1, -1, 1), forward, block


def test_layer_attribution_second_identical_call_only_rechecks_one_mask(
    gpt2, gpt2_tokenizer, tmp_path: Path
) -> None:
    ids, mask, forward, block = layer_setup(gpt2, gpt2_tokenizer)
    explainer = LayerSpectralInteraction(forward, block)
    kwargs = {"target": 5, "method": "exhaustive", "perturbations_per_eval": 8}
    path = tmp_path / "layer.sqlite"
    with ForwardCounter(gpt2) as count:
        first = explainer.attribute(ids, layer_mask=mask, cache=path, **kwargs)
    assert count.calls == 1 + 2 and first.info["n_model_evaluations"] == 16
    with ForwardCounter(gpt2) as count:
        second = explainer.attribute(ids, layer_mask=mask, cache=path, **kwargs)
    # the activation pass and one forward of one stored mask (the check that the model is
    # unchanged), nothing else
    assert count.calls == 2
    assert second.info["n_cached"] == 16 and second.info["n_model_evaluations"] == 0
    assert torch.equal(second.spectrum.coefficients, first.spectrum.coefficients)
    assert second.feature_ids == first.feature_ids == (0, 1, 2, 3)
    uncached = explainer.attribute(ids, layer_mask=mask, **kwargs)
    assert torch.equal(uncached.spectrum.coefficients, first.spectrum.coefficients)
    # other baselines, another layer, other inputs or another target: fresh values
    for changed in (
        explainer.attribute(ids, layer_mask=mask, cache=path, layer_baselines=1.0, **kwargs),
        LayerSpectralInteraction(forward, transformer_blocks(gpt2)[2][1]).attribute(
            ids, layer_mask=mask, cache=path, **kwargs
        ),
        explainer.attribute(ids.flip(1), layer_mask=mask, cache=path, **kwargs),
        explainer.attribute(ids, layer_mask=mask, cache=path, **{**kwargs, "target": 6}),
    ):
        assert changed.info["n_cached"] == 0


def test_layer_cache_sees_the_model_a_closure_captured(gpt2, gpt2_tokenizer, tmp_path: Path):
    ids, mask, _, _ = layer_setup(gpt2, gpt2_tokenizer)
    other = type(gpt2)(gpt2.config).eval()
    other.load_state_dict(gpt2.state_dict())
    with torch.no_grad():
        other.lm_head.weight.mul_(2.0)  # tied: also the embedding; the block is unchanged
    kwargs = {"target": 5, "method": "exhaustive", "layer_mask": mask, "cache": tmp_path / "c"}
    results = []
    for model in (gpt2, other):
        block = transformer_blocks(model)[1][1]

        def forward(input_ids, model=model):
            return model(input_ids=input_ids).logits[:, -1].log_softmax(-1)

        results.append(LayerSpectralInteraction(forward, block).attribute(ids, **kwargs))
    assert results[1].info["n_cached"] == 0


def test_attribute_layers_cache_per_layer(gpt2, gpt2_tokenizer, tmp_path: Path) -> None:
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    kwargs = {"target": TARGET, "method": "exhaustive", "perturbations_per_eval": 16}
    path = tmp_path / "layers.sqlite"
    first = explainer.attribute_layers("The capital of", cache=path, **kwargs)
    assert [r.info["n_cached"] for r in first] == [0, 0, 0]  # each layer its own values
    with ForwardCounter(gpt2) as count:
        second = explainer.attribute_layers("The capital of", cache=path, **kwargs)
    # per layer: the pass that reads its activation and one forward of one stored mask (the
    # check that the model is unchanged), nothing else
    assert count.calls == 2 * len(first)
    for a, b in zip(first, second):
        assert torch.equal(a.spectrum.coefficients, b.spectrum.coefficients)
    other = explainer.attribute_layers("The capital of", target=" Italy.", cache=path,
                                       method="exhaustive", perturbations_per_eval=16)
    assert [r.info["n_cached"] for r in other] == [0, 0, 0]


class Spy:
    """Records the ``process_group`` that ``explain`` resolves and hands to the Evaluator."""

    def __init__(self, monkeypatch) -> None:
        module = sys.modules["torchspex.explain"]
        self.resolved: list = []
        self.evaluated: list = []
        real_resolve, real_evaluator = module.resolve_process_group, module.Evaluator

        def resolve(group):
            self.resolved.append(group)
            return real_resolve(group)

        def evaluator(*args, **kwargs):
            self.evaluated.append(kwargs.get("process_group", "missing"))
            return real_evaluator(*args, **kwargs)

        monkeypatch.setattr(module, "resolve_process_group", resolve)
        monkeypatch.setattr(module, "Evaluator", evaluator)


def test_process_group_reaches_the_evaluator(gpt2, gpt2_tokenizer, monkeypatch) -> None:
    spy = Spy(monkeypatch)
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    alone = attribute(explainer, "The capital of", process_group=False)
    ids, mask, forward, block = layer_setup(gpt2, gpt2_tokenizer)
    LayerSpectralInteraction(forward, block).attribute(
        ids, target=5, layer_mask=mask, method="exhaustive", process_group=False
    )
    explainer.attribute_layers("The capital of", target=TARGET, layers=[block],
                               method="exhaustive", process_group=False)
    assert spy.resolved == [False, False, False]
    assert spy.evaluated == [None, None, None]  # resolved: nothing to share
    default = attribute(explainer, "The capital of")
    assert spy.resolved[-1] is None
    assert torch.equal(alone.spectrum.coefficients, default.spectrum.coefficients)
    assert "world_size" not in alone.info


def test_bad_process_group_fails_before_any_forward_pass(gpt2, gpt2_tokenizer) -> None:
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    with ForwardCounter(gpt2) as count:
        with pytest.raises(TypeError, match="`process_group` must be"):
            attribute(explainer, process_group="gloo")
        # checked before the target is generated (a forward pass per new token)
        with pytest.raises(TypeError, match="`process_group` must be"):
            explainer.attribute("Q: " + PROMPT, process_group="gloo")
        with pytest.raises(ValueError, match="method"):
            explainer.attribute("Q: " + PROMPT, method="spexx")
        with pytest.raises(ValueError, match="method"):
            explainer.attribute_layers("Q: " + PROMPT, method="spexx")
        ids, mask, forward, block = layer_setup(gpt2, gpt2_tokenizer)
        with pytest.raises(TypeError, match="`process_group` must be"):
            LayerSpectralInteraction(forward, block).attribute(
                ids, target=5, layer_mask=mask, process_group="gloo"
            )
    assert count.calls == 0
