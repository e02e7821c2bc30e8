"""The real MiniLM sentence encoder (offline): word-level interactions of a similarity."""

from __future__ import annotations

import pytest
import torch

from torchspex import explain
from torchspex.decoders.exhaustive import all_masks
from torchspex.grouping import text_features

SENTENCE = "The cat sat on the red mat"
REFERENCE = "A cat is lying on a rug"


@pytest.fixture(scope="module")
def minilm(minilm_path, wordpiece):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModel.from_pretrained(minilm_path).eval()


def embed(model, input_ids, attention_mask):
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


@pytest.mark.slow
@pytest.mark.parametrize("baseline", ["remove", "mask"])
def test_sentence_similarity_explained_at_word_level(minilm, wordpiece, baseline):
    feats = text_features(SENTENCE, wordpiece, baseline=baseline)
    assert feats.labels == SENTENCE.split()
    ref = wordpiece(REFERENCE, return_tensors="pt")
    target = embed(minilm, ref["input_ids"], ref["attention_mask"])[0]

    def similarity(masks):
        batch = feats.masked_inputs(masks, padding_side=None)  # attention-mask removal
        return embed(minilm, batch["input_ids"], batch["attention_mask"]) @ target

    result = explain(similarity, feats.n_features, method="exhaustive", index="SV",
                     feature_names=feats.labels, batch_size=64)
    assert result.feature_names == SENTENCE.split()
    # The result reproduces the model: full sentence, and every mask (exhaustive is exact).
    direct = embed(minilm, feats.input_ids[None], torch.ones(1, feats.input_ids.numel(),
                                                             dtype=torch.long))[0] @ target
    assert abs(result.full_value - float(direct)) < 1e-5
    masks = all_masks(feats.n_features)[::13]
    torch.testing.assert_close(result.predict(masks), similarity(masks).double(),
                               atol=1e-5, rtol=0)
    # The shared content word carries the most similarity.
    shapley = result.first_order("SV")
    assert feats.labels[int(shapley.argmax())] == "cat"
