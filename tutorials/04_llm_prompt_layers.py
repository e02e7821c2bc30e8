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
# # 04 · An LLM prompt, and how interactions form layer by layer
#
# `LLMSpectralInteraction` explains the log-probability of a target answer given a prompt
# whose **words** are the features; masked prompts are evaluated in left-padded batches, so
# every mask costs a row of a batch, not a forward pass of its own. `attribute_layers` masks
# the words' hidden states at the output of each transformer block instead, and gives one
# result per block: a layers x words picture of where the answer's evidence sits.
#
# To stay offline and fast, the model is a **tiny GPT-2 built from a `transformers` config**
# (3 blocks, 48 dimensions) with a byte-level BPE tokenizer trained here. Its weights start
# random; we train it for a few seconds on six sentences of the form "Rome is the capital of
# Italy." so that its answers depend on the prompt. It knows nothing else: the numbers below
# illustrate the mechanics, not the behaviour of a real LLM. The same calls work unchanged on
# any Hugging Face causal LM.
#
# Runs offline on the CPU in about a minute. Figures go to `$TORCHSPEX_TUTORIAL_OUT`.

# %%
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import _models  # the tutorials' shared data and models (tutorials/_models.py)
import matplotlib.pyplot as plt
import torch

from torchspex import LLMSpectralInteraction
from torchspex.grouping import text_features
from torchspex.viz import plot_layers, plot_top_k

torch.set_num_threads(1)
OUT = _models.output_dir()

# %% [markdown]
# ## A tiny GPT-2 and its tokenizer, built here
#
# `_models.tiny_gpt2` trains a byte-level BPE tokenizer (400 tokens) on the corpus and a
# 3-layer, 48-dimensional GPT-2 built from a config on it, 150 AdamW steps. Every sentence
# starts with the `<|endoftext|>` token, as GPT-2's documents do.

# %%
FACTS = [("Paris", "France"), ("Rome", "Italy"), ("Berlin", "Germany"), ("Madrid", "Spain"),
         ("Lisbon", "Portugal"), ("Vienna", "Austria")]  # fmt: skip
CORPUS = [f"{city} is the capital of {country}." for city, country in FACTS]
BOS = "<|endoftext|>"
model, tokenizer = _models.tiny_gpt2(CORPUS, bos=BOS, steps=150)

# %% [markdown]
# ## The prompt's words as features
#
# The prompt starts with `<|endoftext|>`: a special token is never a feature, and it keeps
# every masked prompt non-empty (the first answer token needs some context). `regions`
# restricts the features to the words after it, so the labels are the plain words.
# `baseline="remove"` deletes a removed word's tokens (the batch is then left-padded, with
# position ids that make each row equal to its own unpadded forward pass).

# %%
PROMPT = "Rome is the capital of"
feats = text_features(BOS + PROMPT, tokenizer, regions=[PROMPT], baseline="remove")
print(feats)
assert feats.labels == PROMPT.split()

explainer = LLMSpectralInteraction(model, tokenizer)  # attr_target="log_prob" by default
result = explainer.attribute(feats, target=" Italy", method="exhaustive", index="FSII",
                             max_order=2)  # fmt: skip
print(repr(result), "target tokens:", result.output_tokens)

# %% [markdown]
# The values have shape `(1 + T,)` for a target of `T` tokens: output 0 is the log-probability
# of the whole target, output `1 + t` that of token `t` (Captum's `LLMAttribution` layout).
# `result.sequence` selects output 0.

# %%
seq = result.sequence
print(seq)
log_p = seq.full_value
print(f"log P(' Italy' | prompt) = {log_p:.3f} (p = {torch.tensor(log_p).exp():.3f}); "
      f"with every word removed: {seq.baseline_value:.3f}")
with torch.inference_mode():
    ids = tokenizer(BOS + PROMPT + " Italy", return_tensors="pt")["input_ids"]
    logits = model(ids).logits[0, -2].log_softmax(-1)
assert abs(logits[ids[0, -1]].item() - log_p) < 1e-4  # one plain forward pass agrees
top = seq.top_k(1, order=2)[0]
print("strongest pair:", [feats.labels[i] for i in top[0]], f"{top[1]:+.3f}")
assert set(top[0]) == {feats.labels.index("Rome"), feats.labels.index("of")}

# %% [markdown]
# What a reader should see: the strongest interaction is `Rome x of`. "of" is the position
# that predicts the country, and "Rome" only helps when that slot is there: the evidence is
# the pair, not either word alone.
#
# Captum users can keep their plots: `to_captum()` returns an `LLMAttributionResult` with the
# Shapley values as `seq_attr` / `token_attr`.

# %%
fig, ax = plot_top_k(seq, k=8)
fig.savefig(OUT / "04_llm_top_k.png", dpi=110, bbox_inches="tight")
captum_result = result.to_captum("SV")
fig, ax = captum_result.plot_token_attr(show=False)
fig.savefig(OUT / "04_captum_token_attr.png", dpi=110, bbox_inches="tight")
plt.close("all")

# %% [markdown]
# ## Greedy targets
#
# With `target=None` the target is generated greedily from the full prompt first; here we
# also get a value per generated token.

# %%
other = text_features(BOS + "Madrid is the capital of", tokenizer,
                      regions=["Madrid is the capital of"])  # fmt: skip
generated = explainer.attribute(other, target=None, gen_args={"max_new_tokens": 2},
                                method="exhaustive", index="SV")  # fmt: skip
print("generated:", generated.output_tokens)
for t, token in enumerate(generated.output_tokens):
    sv = generated.token(t).first_order("SV")
    print(f"  SV for {token!r}:", dict(zip(other.labels, sv.round(decimals=2).tolist())))

# %% [markdown]
# ## Per-layer sweep
#
# At block `l`, a removed word's hidden states (the block's output at its token positions) are
# replaced by 0 and the rest of the network runs on. Every layer uses the same masks. At the
# last block only the position that reads out the answer ("of") can still matter: whatever the
# other words contribute has already been moved there by attention.

# %%
sweep = explainer.attribute_layers(feats, target=" Italy", method="exhaustive", index="FSII",
                                   max_order=2)  # fmt: skip
print(len(sweep), "layers:", sweep.layer_names)
assert len(sweep) == model.config.n_layer
layers = [res.sequence for res in sweep]  # output 0: the whole target's log-probability
per_layer = torch.stack([res.first_order("SV") for res in layers])  # [n_layers, n_words]
print(per_layer.numpy().round(2))
assert per_layer[-1, :-1].abs().max() < 1e-6  # last block: only "of" still matters
for name, res in zip(sweep.layer_names, layers):
    pairs = res.top_k(1, order=2)  # empty at the last block: no pair is left
    print(f"  {name}: strongest pair", [([feats.labels[i] for i in p], round(v, 3))
                                        for p, v in pairs])  # fmt: skip
fig, ax = plot_layers(layers, layer_names=sweep.layer_names, index="SV")
fig.savefig(OUT / "04_layer_sweep.png", dpi=120, bbox_inches="tight")
plt.close("all")
print("wrote", sorted(p.name for p in OUT.glob("04_*.png")))
