from __future__ import annotations

import pytest
import torch

from torchspex.decoders.exhaustive import all_masks
from torchspex.grouping import text_features
from torchspex.llm import LLMInteractions, LLMSpectralInteraction

PROMPT = "Paris is the capital of"
TARGET = " France."


def single_log_probs(model, prompt_ids, target_ids):
    """One unpadded forward, no attention mask: log-probs of the target, [1 + T]."""
    full = torch.cat([prompt_ids, target_ids]).unsqueeze(0)
    with torch.no_grad():
        logits = model(input_ids=full).logits[0]
    width = prompt_ids.numel()
    lp = torch.log_softmax(logits[width - 1 : -1].double(), -1)
    lp = lp.gather(1, target_ids.view(-1, 1)).squeeze(1)
    return torch.cat([lp.sum().view(1), lp])


@pytest.fixture(scope="module")
def setup(gpt2, gpt2_tokenizer):
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    feats = text_features("Q: " + PROMPT, gpt2_tokenizer, regions=[PROMPT])
    target = explainer.target_ids(feats, TARGET)
    masks = all_masks(feats.n_features)
    keep = feats.token_keep(masks)
    singles = torch.stack(
        [single_log_probs(gpt2, feats.input_ids[k], target) for k in keep]
    )
    return explainer, feats, target, masks, singles


def test_features_are_the_prompt_words(setup):
    _, feats, _, _, _ = setup
    assert feats.labels == PROMPT.split()
    assert feats.text.startswith("Q: ")  # the prefix is kept in every mask, never a feature


@pytest.mark.slow
def test_batched_padded_equals_single_forwards_for_every_batch_size(setup):
    explainer, feats, target, masks, singles = setup
    lengths = feats.masked_inputs(masks)["attention_mask"].sum(1)
    assert lengths.unique().numel() > 3  # the batches really are padded
    for batch_size in range(1, masks.shape[0] + 1):
        values = explainer.values(feats, masks, target, perturbations_per_eval=batch_size)
        torch.testing.assert_close(values, singles, atol=1e-5, rtol=0)


def test_values_do_not_depend_on_batch_composition(setup):
    explainer, feats, target, masks, _ = setup
    reference = explainer.values(feats, masks, target, perturbations_per_eval=32)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        perm = torch.randperm(masks.shape[0], generator=g)
        shuffled = explainer.values(feats, masks[perm], target, perturbations_per_eval=7)
        torch.testing.assert_close(shuffled, reference[perm], atol=1e-6, rtol=0)


def test_exhaustive_result_reproduces_every_value(setup):
    explainer, feats, _, masks, singles = setup
    result = explainer.attribute(feats, TARGET, method="exhaustive", index="Moebius")
    assert isinstance(result, LLMInteractions)
    assert result.n_evaluations == 2 ** feats.n_features
    assert result.out_shape == (1 + len(result.output_tokens),)
    torch.testing.assert_close(result.predict(masks), singles, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        torch.as_tensor(result.full_value), singles[-1], atol=1e-5, rtol=0
    )
    # The views keep the LLM metadata, and the per-token rows add up to the sequence row.
    sv = result.to_index("SV")
    assert isinstance(sv, LLMInteractions) and sv.output_tokens == result.output_tokens
    fo = sv.first_order()
    torch.testing.assert_close(fo[0], fo[1:].sum(0), atol=1e-9, rtol=0)
    assert result.token(0).out_shape == () and result.sequence.out_shape == ()


def test_prob_target(gpt2, gpt2_tokenizer, setup):
    _, feats, target, masks, singles = setup
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer, attr_target="prob")
    values = explainer.values(feats, masks, target, perturbations_per_eval=8)
    torch.testing.assert_close(values, singles.exp(), atol=1e-6, rtol=1e-5)


def test_target_none_generates_greedily(gpt2, gpt2_tokenizer):
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    feats = text_features("Q: " + PROMPT, gpt2_tokenizer, regions=[PROMPT])
    result = explainer.attribute(
        feats, None, gen_args={"max_new_tokens": 3}, method="exhaustive"
    )
    ids = feats.input_ids.unsqueeze(0)
    with torch.no_grad():
        out = gpt2.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
            pad_token_id=gpt2_tokenizer.eos_token_id,
        )
    assert result.target_ids.tolist() == out[0, ids.shape[1] :].tolist()
    assert result.out_shape == (4,)


def test_matches_captum_llm_attribution_shapley_and_ablation(gpt2, gpt2_tokenizer):
    captum_attr = pytest.importorskip("captum.attr")
    inp = captum_attr.TextTemplateInput(
        "Q: {} {} {} capital {}", values=["Paris", "is", "the", "of"]
    )
    ours = LLMSpectralInteraction(gpt2, gpt2_tokenizer).attribute(
        inp, TARGET, method="exhaustive", perturbations_per_eval=5
    )
    captum_sv = captum_attr.LLMAttribution(
        captum_attr.ShapleyValues(gpt2), gpt2_tokenizer
    ).attribute(inp, TARGET, forward_in_tokens=False)
    result = ours.to_captum("SV")
    assert result.input_tokens == ["Paris", "is", "the", "of"]
    torch.testing.assert_close(result.seq_attr, captum_sv.seq_attr, atol=2e-5, rtol=0)
    torch.testing.assert_close(result.token_attr, captum_sv.token_attr, atol=2e-5, rtol=0)
    # Feature ablation: f(all) - f(all but i), read off our spectrum without new model calls.
    captum_fa = captum_attr.LLMAttribution(
        captum_attr.FeatureAblation(gpt2), gpt2_tokenizer
    ).attribute(inp, TARGET, forward_in_tokens=False)
    drop_one = ~torch.eye(4, dtype=torch.bool)
    ablation = (torch.as_tensor(ours.full_value) - ours.predict(drop_one)).T.float()
    torch.testing.assert_close(ablation[0], captum_fa.seq_attr, atol=2e-5, rtol=0)
    torch.testing.assert_close(ablation[1:], captum_fa.token_attr, atol=2e-5, rtol=0)


def test_accepts_captum_text_token_input(gpt2, gpt2_tokenizer):
    captum_attr = pytest.importorskip("captum.attr")
    inp = captum_attr.TextTokenInput(PROMPT, gpt2_tokenizer, baselines=0)
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    target = explainer.target_ids(inp, TARGET)
    masks = all_masks(inp.n_itp_features)[:: 97]
    values = explainer.values(inp, masks, target, perturbations_per_eval=4)
    for mask, value in zip(masks, values):
        ids = inp.to_model_input(mask.long().unsqueeze(0))[0]
        torch.testing.assert_close(value, single_log_probs(explainer.model, ids, target),
                                   atol=1e-5, rtol=0)


def test_errors(gpt2, gpt2_tokenizer):
    with pytest.raises(ValueError, match="attr_target"):
        LLMSpectralInteraction(gpt2, gpt2_tokenizer, attr_target="logit")
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    with pytest.raises(TypeError, match="`inp` must be"):
        explainer.attribute(123, TARGET, method="exhaustive")
    with pytest.raises(ValueError, match="gen_args"):
        explainer.attribute(PROMPT, TARGET, gen_args={"max_new_tokens": 2})
    with pytest.raises(ValueError, match="empty"):  # nothing left when every word is removed
        explainer.attribute("capital", TARGET, method="exhaustive")
    with pytest.raises(ValueError, match="at least one token"):
        explainer.attribute(PROMPT, "", method="exhaustive")


def test_training_mode_warns(gpt2, gpt2_tokenizer):
    gpt2.train()
    try:
        with pytest.warns(UserWarning, match="training mode"):
            LLMSpectralInteraction(gpt2, gpt2_tokenizer).attribute(
                text_features("Q: capital", gpt2_tokenizer, regions=["capital"]), TARGET,
                method="exhaustive",
            )
    finally:
        gpt2.eval()


def test_show_progress_ends_at_100(setup, capsys):
    explainer, feats = setup[:2]
    result = explainer.attribute(feats, TARGET, method="exhaustive", show_progress=True,
                                 perturbations_per_eval=8)  # fmt: skip
    err = capsys.readouterr().err
    n = result.n_evaluations
    assert "LLM Spectral Interaction attribution" in err
    assert "100%" in err and f"{n}/{n}" in err


def test_default_method_is_auto_and_exact_when_the_budget_covers_every_mask(setup):
    # the default is method="auto" as for SpectralInteraction: on 5 words its default budget
    # (20 calls per feature, capped at 2^5) covers every mask, so the values are exact
    explainer, feats, _, masks, singles = setup
    result = explainer.attribute(feats, TARGET)
    assert result.info["auto"]["choice"] == "exhaustive" and result.info["exact"]
    assert result.n_evaluations == 2 ** feats.n_features
    torch.testing.assert_close(result.predict(masks), singles, atol=1e-5, rtol=0)


class _Counted(torch.nn.Module):
    """``model`` with a count of its forward passes (generation included)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.config, self.calls = model, model.config, 0

    def forward(self, **kwargs):
        self.calls += 1
        return self.model(**kwargs)

    def generate(self, **kwargs):
        self.calls += 1
        return self.model.generate(**kwargs)


def test_target_ids_are_checked_before_any_forward_pass(gpt2, gpt2_tokenizer):
    # ids past the vocabulary used to index the logits after the first batch; floats were
    # truncated to other tokens (1.7 -> 1)
    model = _Counted(gpt2).eval()
    explainer = LLMSpectralInteraction(model, gpt2_tokenizer)
    feats = text_features("Q: " + PROMPT, gpt2_tokenizer, regions=[PROMPT])
    for bad, error, match in (([10**6], ValueError, r"0\.\.299"), ([-1], ValueError, r"\[-1\]"),
                              (torch.tensor([1.7, 2.2]), TypeError, "integers")):  # fmt: skip
        with pytest.raises(error, match=match):
            explainer.attribute(feats, bad, method="exhaustive")
    assert model.calls == 0


def test_a_bad_budget_fails_before_the_target_is_generated(gpt2, gpt2_tokenizer):
    # generation used to run first (max_new_tokens forward passes) and the budget fail after
    from torchspex import BudgetTooSmallError

    model = _Counted(gpt2).eval()
    explainer = LLMSpectralInteraction(model, gpt2_tokenizer)
    feats = text_features("Q: " + PROMPT, gpt2_tokenizer, regions=[PROMPT])
    with pytest.raises(BudgetTooSmallError):
        explainer.attribute(feats, method="exhaustive", n_samples=4,
                            gen_args={"max_new_tokens": 3})  # fmt: skip
    with pytest.raises(BudgetTooSmallError):
        explainer.attribute_layers(feats, method="exhaustive", n_samples=4,
                                   gen_args={"max_new_tokens": 3})  # fmt: skip
    with pytest.raises(ValueError, match="empty"):  # every token a feature, removed
        explainer.attribute("capital", gen_args={"max_new_tokens": 3}, method="exhaustive")
    assert model.calls == 0


def test_a_prompt_longer_than_the_model_fails_before_any_forward_pass(gpt2, gpt2_tokenizer):
    model = _Counted(gpt2).eval()  # 64 learned positions
    explainer = LLMSpectralInteraction(model, gpt2_tokenizer)
    long = " ".join(["Paris is the capital of France."] * 12)
    assert text_features(long, gpt2_tokenizer).input_ids.numel() > 64
    with pytest.raises(ValueError, match="positions; the model has 64"):
        explainer.attribute(long, TARGET, method="auto", n_samples=64)
    feats = text_features("Q: " + PROMPT, gpt2_tokenizer, regions=[PROMPT])
    with pytest.raises(ValueError, match="positions; the model has 64"):  # with the target
        explainer.attribute(feats, " France" * 60, method="exhaustive")
    assert model.calls == 0


def test_a_rotary_model_past_its_length_only_warns(gpt2_tokenizer):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=len(gpt2_tokenizer), hidden_size=16, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=8,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config).eval()
    feats = text_features("Q: " + PROMPT, gpt2_tokenizer, regions=[PROMPT])
    assert feats.input_ids.numel() > 8
    with pytest.warns(UserWarning, match="the model has 8: results beyond"):
        result = LLMSpectralInteraction(model, gpt2_tokenizer).attribute(
            feats, TARGET, method="exhaustive"
        )
    assert torch.isfinite(result.first_order("SV")).all()


class _Wrapped(torch.nn.Module):
    def __init__(self, model, how):
        super().__init__()
        self.model, self.how = model, how

    def forward(self, input_ids, attention_mask, position_ids=None):
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids).logits  # fmt: skip
        if self.how == "dict":
            return {"scores": logits}
        if self.how == "last":
            return logits[:, -1]
        if self.how == "vocab":
            return logits[..., :100]
        return logits[:1]


@pytest.mark.parametrize(("how", "error", "match"), [
    ("dict", TypeError, "next-token logits"), ("last", ValueError, "logits of shape"),
    ("vocab", ValueError, "do not share a vocabulary"), ("rows", ValueError, "for 32 prompts"),
])  # fmt: skip
def test_model_outputs_are_checked(gpt2, gpt2_tokenizer, how, error, match):
    # each raised an AttributeError / RuntimeError from deep inside the log-softmax before
    feats = text_features("Q: " + PROMPT, gpt2_tokenizer, regions=[PROMPT])
    explainer = LLMSpectralInteraction(_Wrapped(gpt2, how).eval(), gpt2_tokenizer)
    with pytest.raises(error, match=match):
        explainer.attribute(feats, " the", method="exhaustive", perturbations_per_eval=32)
