"""Memory of ``LLMSpectralInteraction``: out-of-memory back-off and long prompts (issue 31)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchspex.grouping import text_features
from torchspex.llm import LLMSpectralInteraction
from torchspex.llm.llm import AUTO_MAX_LOGITS, AUTO_TOKENS_PER_BATCH

from .conftest import CORPUS

PROMPT = "Paris is the capital of"  # 5 words: exhaustive = 32 masks
TARGET = " France."


class Fussy(nn.Module):
    """The model, raising CUDA's out-of-memory error (on any device) above ``limit`` rows."""

    def __init__(self, model: nn.Module, limit: int) -> None:
        super().__init__()
        self.model, self.limit, self.seen = model, limit, []
        self.eval()

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None,
                logits_to_keep=0):  # fmt: skip
        self.seen.append(int(input_ids.shape[0]))
        if input_ids.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, use_cache=use_cache,
                          logits_to_keep=logits_to_keep)  # fmt: skip


def _explain(explainer, **kwargs):
    feats = text_features("Q: " + PROMPT, explainer.tokenizer, regions=[PROMPT])
    return explainer.attribute(feats, TARGET, method="exhaustive", index="Moebius", **kwargs)


def test_out_of_memory_halves_the_batch_and_keeps_the_result(gpt2, gpt2_tokenizer):
    fussy = Fussy(gpt2, limit=3)
    result = _explain(LLMSpectralInteraction(fussy, gpt2_tokenizer))  # "auto" is the default
    # 32 masks in one request (auto: 64 prompts of ~12 tokens): 32, 16, 8, 4 fail; 2 fit
    assert fussy.seen[:5] == [32, 16, 8, 4, 2] and set(fussy.seen[4:]) == {2}
    assert result.info["perturbations_per_eval"] == 2
    assert result.info["batch_backoffs"] == [[32, 16], [16, 8], [8, 4], [4, 2]]
    plain = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    same_batches = _explain(plain, perturbations_per_eval=2)
    assert torch.equal(result.spectrum.coefficients, same_batches.spectrum.coefficients)
    one = _explain(plain, perturbations_per_eval=1)
    torch.testing.assert_close(result.spectrum.coefficients, one.spectrum.coefficients,
                               atol=1e-5, rtol=0)  # fmt: skip
    assert one.info["perturbations_per_eval"] == 1 and one.info["batch_backoffs"] == []


def test_out_of_memory_errors_name_the_fix(gpt2, gpt2_tokenizer):
    fixed = LLMSpectralInteraction(Fussy(gpt2, limit=3), gpt2_tokenizer)
    with pytest.raises(torch.OutOfMemoryError) as info:  # a fixed size never changes
        _explain(fixed, perturbations_per_eval=4)
    assert "lower `perturbations_per_eval`" in "".join(getattr(info.value, "__notes__", [""]))
    hopeless = LLMSpectralInteraction(Fussy(gpt2, limit=0), gpt2_tokenizer)
    with pytest.raises(torch.OutOfMemoryError) as info:
        _explain(hopeless)
    assert hopeless.model.seen == [32, 16, 8, 4, 2, 1]
    notes = "".join(getattr(info.value, "__notes__", [""]))
    assert "a single masked prompt" in notes and "bfloat16" in notes
    with pytest.raises(ValueError, match="positive int or 'auto'"):
        _explain(fixed, perturbations_per_eval="big")


def test_auto_batch_size_follows_the_sequence_length(gpt2, gpt2_tokenizer):
    explainer = LLMSpectralInteraction(gpt2, gpt2_tokenizer)
    assert explainer.auto_batch_size(1005, 5) == AUTO_TOKENS_PER_BATCH // 1005 == 8
    assert explainer.auto_batch_size(12, 3) == 64
    assert explainer.auto_batch_size(20_000, 5) == 1

    class NoKeep(nn.Module):  # returns logits at every position: the vocabulary counts
        config = type("Config", (), {"vocab_size": 50257})()

        def forward(self, input_ids, attention_mask=None, position_ids=None):
            raise AssertionError("not called")

    assert LLMSpectralInteraction(NoKeep(), gpt2_tokenizer).auto_batch_size(1005, 5) == (
        AUTO_MAX_LOGITS // (1005 * 50257)
    )


def test_a_1000_token_prompt_over_words_keeps_only_the_target_logits(gpt2_tokenizer):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=len(gpt2_tokenizer), n_positions=1100, n_embd=64, n_layer=2, n_head=2,
        bos_token_id=gpt2_tokenizer.eos_token_id, eos_token_id=gpt2_tokenizer.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(config).eval()
    text = " ".join(CORPUS[:3] * 13)
    feats = text_features("Q: " + text, gpt2_tokenizer, regions=[text])
    n_target = 2
    n_tokens = feats.input_ids.numel() + n_target
    assert n_tokens >= 1000 and feats.n_features > 350  # words grouped
    shapes = []
    hook = model.lm_head.register_forward_hook(lambda m, a, out: shapes.append(out.shape))
    try:
        explainer = LLMSpectralInteraction(model, gpt2_tokenizer)
        result = explainer.attribute(feats, [5, 7], method="proxyspex", n_samples=64,
                                     max_order=1)  # fmt: skip
    finally:
        hook.remove()
    batch = result.info["perturbations_per_eval"]
    assert batch == AUTO_TOKENS_PER_BATCH // n_tokens == 7  # 1,057 tokens
    assert result.n_evaluations == 64 == sum(s[0] for s in shapes)
    # the only logits materialized: [batch, target tokens, vocab] per forward pass
    assert all(s[0] <= batch and tuple(s[1:]) == (n_target, len(gpt2_tokenizer)) for s in shapes)
    assert torch.isfinite(result.first_order("SV")).all()
