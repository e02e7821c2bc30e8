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
# # 05 · One spectrum, every interaction index
#
# torchspex learns a model's Fourier spectrum once; every interaction index is a linear view
# of it, computed without new model calls. This tutorial takes a small game whose structure we
# know, prints it in every index, explains what each index's **empty-set entry `()`** means,
# checks the defining properties, and compares with shapiq's exact computations. Then it hands
# the result to shapiq (plots included) and shap.
#
# What you learn: `to_index`, `to_dict`, `first_order`, `to_shapiq` / `from_shapiq`,
# `to_shap`, and which index to use for what.
#
# Runs in seconds. Figures go to `$TORCHSPEX_TUTORIAL_OUT`.

# %%
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import _models  # the tutorials' shared set-up (tutorials/_models.py)
import matplotlib.pyplot as plt
import numpy as np
import shapiq
import torch

from torchspex import INDEX_NAMES, Interactions, explain

OUT = _models.output_dir()

# %% [markdown]
# ## A game with known structure
#
# Five features; with `x_i = 1` when feature `i` is kept, the value is a sum of products
# (its Möbius form, which is what one would write by hand):
#
# `f(x) = 1 + 2 x0 x1 - x2 + 1.5 x1 x3 x4`
#
# The value function receives masks `bool [m, 5]` and may return NumPy or torch values.

# %%
NAMES = ["a", "b", "c", "d", "e"]


def game(masks: torch.Tensor) -> torch.Tensor:
    x = masks.double()
    return 1.0 + 2.0 * x[:, 0] * x[:, 1] - x[:, 2] + 1.5 * x[:, 1] * x[:, 3] * x[:, 4]


result = explain(game, 5, method="exhaustive", index="Moebius", feature_names=NAMES)
print(result)
assert result.to_dict() == {(): 1.0, (2,): -1.0, (0, 1): 2.0, (1, 3, 4): 1.5}

all_masks = torch.tensor([[(m >> i) & 1 for i in range(5)] for m in range(32)], dtype=torch.bool)
values = game(all_masks)
f_none, f_all, f_mean = values[0].item(), values[-1].item(), values.mean().item()
print(f"f(none) = {f_none}, f(all) = {f_all}, mean over all 32 masks = {f_mean:.5f}")

# %% [markdown]
# ## Every index, from the same spectrum
#
# Each row is one index capped at order 2, read from the same spectrum: its `()` entry, three
# interactions, and the sum of all its values. Order-capped indices treat the 3-way term
# `b x d x e` differently: Möbius just drops it; SII and BII report each pair's average effect
# over contexts (so they do not add up to anything in particular); k-SII, STII and FSII
# redistribute it so that the values still add up to `f(all) = 3.5`.

# %%
rows = []
for index in INDEX_NAMES:
    view = result.to_index(index, max_order=2)
    vals = view.to_dict()
    rows.append((index, vals.get((), 0.0), vals.get((0, 1), 0.0), vals.get((1, 3), 0.0),
                 vals.get((1,), 0.0), sum(vals.values())))  # fmt: skip
print(f"{'index':>8} {'()':>9} {'(a,b)':>9} {'(b,d)':>9} {'(b,)':>9} {'sum':>9}")
for index, *cells in rows:
    print(f"{index:>8} " + " ".join(f"{c:9.4f}" for c in cells))

# %% [markdown]
# ## What the `()` entry means
#
# * **Moebius, SV, k-SII, STII, FSII**: `()` is `f(none)`, the value with every feature
#   removed. SV, k-SII, STII and FSII also add up to `f(all)` at any order cap (efficiency:
#   they split `f(all) - f(none)`); Möbius does only uncapped (the table's capped Möbius row
#   lost the 3-way term).
# * **Fourier, BII, BV**: `()` is the *average* of `f` over all masks (each feature kept with
#   probability 1/2), the Banzhaf view.
# * **SII**: `()` is `sum_S a(S) / (|S| + 1)`, the mean of `f` when a random number of
#   features, uniform from 0 to n, is kept (the Shapley weighting of coalitions).
# * **FBII**: the intercept of the least-squares fit of `f` by a polynomial of degree
#   `max_order` over uniformly random masks (faithful Banzhaf).

# %%
tol = 1e-12
for index, order in (("Moebius", None), ("SV", 1), ("k-SII", 2), ("STII", 2), ("FSII", 2)):
    vals = result.to_index(index, max_order=order).to_dict()
    assert abs(vals[()] - f_none) < tol and abs(sum(vals.values()) - f_all) < tol, index
for index in ("Fourier", "BII", "BV"):
    assert abs(result.to_index(index, max_order=2).to_dict()[()] - f_mean) < tol, index
moebius = result.to_index("Moebius").to_dict()
sii_empty = sum(v / (len(s) + 1) for s, v in moebius.items())
assert abs(result.to_index("SII", max_order=2).to_dict()[()] - sii_empty) < tol

# FBII is a least-squares fit: regress f on every product of at most 2 kept-indicators.
sets = [()] + [(i,) for i in range(5)] + [(i, j) for i in range(5) for j in range(i + 1, 5)]
design = torch.stack([all_masks[:, list(s)].all(dim=1).double() for s in sets], dim=1)
coef = torch.linalg.lstsq(design, values.unsqueeze(1)).solution[:, 0]
fbii = result.to_index("FBII", max_order=2)
assert all(abs(fbii[s] - c) < 1e-10 for s, c in zip(sets, coef.tolist()))
print("FBII equals the least-squares fit; every () entry checked.")

# %% [markdown]
# First-order values come back dense, one per feature: Shapley values split the pair `a x b`
# evenly and the triple `b x d x e` in thirds.

# %%
sv = result.first_order("SV")
print("SV:", dict(zip(NAMES, sv.tolist())))
assert torch.allclose(sv, torch.tensor([1.0, 1.5, -1.0, 0.5, 0.5], dtype=torch.float64))

# %% [markdown]
# ## The same numbers as shapiq
#
# shapiq's `ExactComputer` evaluates all 2^5 coalitions and computes each index from its
# definition; torchspex reads it off the spectrum. `to_shapiq` returns a
# `shapiq.InteractionValues` (sparse, with an explicit lookup, so it stays fast for thousands
# of features), so shapiq's plots work on torchspex results.

# %%
exact = shapiq.ExactComputer(lambda c: game(torch.as_tensor(c)).numpy(), n_players=5)
for index in ("SII", "k-SII", "STII", "FSII", "BII", "FBII"):
    theirs = exact(index, 2)
    ours = result.to_index(index, max_order=2).to_shapiq()
    keys = set(theirs.interactions) | set(ours.interactions)
    gap = max(abs(theirs.interactions.get(k, 0.0) - ours.interactions.get(k, 0.0)) for k in keys)
    print(f"  {index:>6}: largest difference to shapiq {gap:.1e}")
    assert gap < 1e-8  # shapiq solves FSII by a weighted regression: ~1e-9 there

iv = result.to_index("k-SII", max_order=2).to_shapiq()
print(iv)

# %% [markdown]
# `from_shapiq` reads shapiq's object back. Index values capped at order 2 do not determine the
# game, so torchspex returns the unique game of degree <= 2 with exactly these values: for
# k-SII its Möbius coefficients *are* the k-SII values, the order-2 surrogate they describe.

# %%
back = Interactions.from_shapiq(iv, feature_names=NAMES)
for view in (back.to_index("k-SII", max_order=2), back.to_index("Moebius")):
    gap = max(abs(view[k] - v) for k, v in iv.interactions.items())
    assert gap < 1e-12, gap
print("round trip through shapiq: exact")

# %%
fig, ax = iv.plot_network(show=False, feature_names=dict(enumerate(NAMES)))
fig.savefig(OUT / "05_shapiq_network.png", dpi=100, bbox_inches="tight")
plt.close("all")

# %% [markdown]
# ## shap
#
# `to_shap` gives a one-dimensional `shap.Explanation` of first-order values (Shapley by
# default), with `base_values = f(none)`, for shap's bar and waterfall plots.

# %%
explanation = result.to_shap()
print(explanation)
assert np.allclose(explanation.values, sv.numpy())
assert abs(explanation.base_values + explanation.values.sum() - f_all) < 1e-12
print("wrote", sorted(p.name for p in OUT.glob("05_*.png")))
