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
# # 01 · Quickstart on tabular data
#
# Two models trained on scikit-learn's breast-cancer data, explained with feature interactions:
#
# 1. a small **torch MLP** explained with `SpectralInteraction`, Captum-style, where the 30
#    columns are grouped into the 10 measurements they describe (radius, texture, ...);
# 2. a **LightGBM** model explained with `TreeInteraction`, which reads exact interactions
#    straight out of the trees (no model calls at all).
#
# Both give one sparse spectrum from which every interaction index, the top interactions,
# the first-order (Shapley) values and the plots are cheap views.
#
# Runs offline on the CPU in a few seconds. Figures go to `$TORCHSPEX_TUTORIAL_OUT`
# (default: a fresh temporary directory).

# %%
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import _models  # the tutorials' shared data and models (tutorials/_models.py)
import matplotlib.pyplot as plt
import torch

from torchspex import SpectralInteraction, TreeInteraction

torch.set_num_threads(1)
OUT = _models.output_dir()

# %% [markdown]
# ## The data and an MLP
#
# Standardized features (float64, so the checks below hold to round-off), a two-layer MLP
# `30 -> 32 -> 2` trained for 200 full-batch Adam steps. Class 0 is *malignant*, class 1
# *benign*.

# %%
x_np, x, y, columns = _models.breast_cancer()
mlp = _models.tabular_mlp(hidden=[32])
_models.train_classifier(mlp, x, y, lr=1e-2, steps=200, weight_decay=1e-4)
accuracy = (mlp(x).argmax(1) == y).float().mean().item()
print(f"MLP training accuracy: {accuracy:.3f}")
assert accuracy > 0.95

# %% [markdown]
# ## Feature groups
#
# Each measurement appears three times (`mean radius`, `radius error`, `worst radius`). A
# Captum-style `feature_mask` gives all three columns one group id, so a group is kept or
# removed as a whole: 10 features instead of 30.

# %%
def measurement(column: str) -> str:
    return column.replace("mean ", "").replace(" error", "").replace("worst ", "")


groups = sorted({measurement(c) for c in columns})
feature_mask = torch.tensor([[groups.index(measurement(c)) for c in columns]])  # [1, 30]
print(len(groups), "groups:", groups)

# %% [markdown]
# ## Explain one prediction with `SpectralInteraction`
#
# We explain the malignant logit of one malignant patient. A removed group takes its value
# from a **background set** of 20 training rows (the output is averaged over them, as shap
# does), so "removed" means "typical". With 10 groups, `method="exhaustive"` evaluates all
# 2^10 = 1024 masks and is exact; for more features use `method="spex"` or `"proxyspex"`
# with a budget `n_samples` (tutorial 06).

# %%
patient = x[(y == 0).nonzero()[0, 0]].unsqueeze(0)  # [1, 30]
background = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:20]]
explainer = SpectralInteraction(mlp)
result = explainer.attribute(
    patient,
    baselines=background.unsqueeze(1),  # [R=20, 1, 30]: a background set
    target=0,
    feature_mask=feature_mask,
    method="exhaustive",
    index="FSII",
    max_order=2,
    feature_names=groups,
)
print(repr(result))
one = result.select(0)  # the first (only) example of the batch
print(one)

# %% [markdown]
# `first_order("SV")` gives Shapley values shaped like the input, as Captum's attribution
# methods do (every column carries its group's value), so it feeds Captum's visualization and
# metrics directly. Shapley values are *efficient*: they add up to the model's value on the
# input minus its value with everything removed; `convergence_delta` is that gap, zero for the
# exhaustive method.

# %%
sv_columns = result.first_order("SV")  # [1, 30], like the input
sv = one.first_order("SV")  # [10], one per group
assert torch.equal(sv_columns[0], sv[feature_mask[0]])
with torch.inference_mode():
    f_input = mlp(patient)[0, 0]
    f_removed = mlp(background)[:, 0].mean()
print(f"sum of Shapley values {sv.sum():.6f} = f(input) - f(removed) = {f_input - f_removed:.6f}")
assert abs(sv.sum() - (f_input - f_removed)) < 1e-9
assert float(result.convergence_delta.abs().max()) < 1e-9
for name, value in sorted(zip(groups, sv.tolist()), key=lambda t: -abs(t[1]))[:5]:
    print(f"  SV {name:>18}: {value:+.4f}")

# %% [markdown]
# The same spectrum in other indices, with no new model calls. The pairwise FSII values are
# the best order-2 approximation of the model's response to removing groups.

# %%
print("strongest pairs (FSII):")
for ids, value in one.top_k(5, order=2):
    print(f"  {groups[ids[0]]} x {groups[ids[1]]}: {value:+.4f}")
stii = one.to_index("STII", max_order=2)
assert abs(sum(stii.to_dict().values()) - float(f_input)) < 1e-9  # STII is efficient too
fig, ax = one.plot("bar", k=10)
fig.savefig(OUT / "01_mlp_top_k.png", dpi=110)
fig, ax = one.plot("heatmap")
fig.savefig(OUT / "01_mlp_heatmap.png", dpi=110)
plt.close("all")

# %% [markdown]
# ## LightGBM: exact interactions from the trees
#
# `TreeInteraction` parses the fitted trees and computes exact interactions under the
# path-dependent value function of TreeSHAP (at a split on a removed feature, follow both
# children weighted by their training cover). For Shapley values and k-SII up to order 2 it
# takes a fast route that never expands the trees' Fourier spectrum: the result's spectrum is
# then the degree-2 game with the same k-SII values (baseline and full value exact); pass
# `full_spectrum=True` for the trees' whole spectrum and any other index. The value explained
# is the raw margin (log-odds). Here each of the 30 columns is a feature.

# %%
import lightgbm

booster = lightgbm.LGBMClassifier(
    n_estimators=60, num_leaves=8, learning_rate=0.1, n_jobs=1, verbose=-1, random_state=0
).fit(x_np, y.numpy())
row = x_np[(y == 0).nonzero()[0, 0]]
tree_result = TreeInteraction(booster).attribute(row, index="k-SII", max_order=2,
                                                  feature_names=columns)  # fmt: skip
print(repr(tree_result), "model calls:", tree_result.n_evaluations)

# %%
margin = float(booster.predict(row[None], raw_score=True)[0])
tree_sv = tree_result.first_order("SV")
print(f"margin {margin:.6f}; baseline (all removed) {tree_result.baseline_value:.6f}")
assert abs(tree_result.full_value - margin) < 1e-9  # the spectrum reproduces the trees
assert abs(float(tree_sv.sum()) - (margin - tree_result.baseline_value)) < 1e-9
print("strongest k-SII interactions of the trees:")
for ids, value in tree_result.top_k(6):
    print(f"  {' x '.join(columns[i] for i in ids)}: {value:+.4f}")
fig, ax = tree_result.plot("bar", k=12)
fig.savefig(OUT / "01_lightgbm_top_k.png", dpi=110)
plt.close("all")
print("wrote", sorted(p.name for p in OUT.glob("01_*.png")))
