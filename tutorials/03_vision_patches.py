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
# # 03 · Image patches on a small CNN
#
# We train a small convolutional network on scikit-learn's 8x8 handwritten digits (a few
# epochs, seconds on a CPU), cut a test image into a grid of 2x2-pixel **patches**, and learn
# which patches, and which *pairs* of patches, drive the predicted class's logit.
#
# What you learn: patch feature masks (`torchspex.grouping.patch_grid`), SPEX with a budget
# on 16 features, checking the learned surrogate on held-out masks, the image plot, and the
# hand-off to Captum's `visualize_image_attr`.
#
# Runs offline on the CPU in well under a minute. Figures go to `$TORCHSPEX_TUTORIAL_OUT`.

# %%
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import _models  # the tutorials' shared data and models (tutorials/_models.py)
import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits

from torchspex import SpectralInteraction
from torchspex.grouping import mask_image, patch_grid, patch_labels
from torchspex.viz import plot_image, visualize_image

torch.set_num_threads(1)
OUT = _models.output_dir()

# %% [markdown]
# ## Train a small CNN
#
# Pixel intensities scaled to [0, 1]; 1400 training images, the rest held out; 6 epochs of
# Adam on mini-batches of 64.

# %%
digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
labels = torch.tensor(digits.target)
split = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
train, test = split[:1400], split[1400:]

torch.manual_seed(0)
cnn = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
    torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 10),
)  # fmt: skip
_models.train_classifier(cnn, images[train], labels[train], lr=3e-3, steps=6, batch_size=64)
with torch.inference_mode():
    accuracy = (cnn(images[test]).argmax(1) == labels[test]).float().mean().item()
print(f"test accuracy: {accuracy:.3f}")
assert accuracy > 0.9

# %% [markdown]
# ## Patches as features
#
# `patch_grid` returns a Captum-style `feature_mask` (patch ids, numbered row by row) that
# broadcasts over the batch and channels; `patch_labels` names the patches `r{row}c{col}`.
# A removed patch is set to the baseline 0 (black background).

# %%
image = images[test[0]].unsqueeze(0)  # [1, 1, 8, 8]
with torch.inference_mode():
    predicted = int(cnn(image).argmax())
print("true label", int(labels[test[0]]), "predicted", predicted)
feature_mask = patch_grid(image.shape, 2)  # [1, 1, 8, 8], ids 0..15
names = patch_labels(image.shape, 2)
print(feature_mask[0, 0])

# %% [markdown]
# ## Explain with SPEX on a budget
#
# 16 patches have 2^16 = 65,536 masks. SPEX learns the sparse spectrum from about 2,500 of
# them (`n_samples` caps the count; the result says how many it used), and we ask for FSII up
# to order 2.

# %%
result = SpectralInteraction(cnn).attribute(
    image,
    baselines=0.0,
    target=predicted,
    feature_mask=feature_mask,
    method="spex",
    n_samples=2500,
    max_order=2,
    index="FSII",
    feature_names=names,
    generator=0,
)
print(repr(result))
assert result.n_evaluations <= 2500
one = result.select(0)
print(one)

# %% [markdown]
# Is the learned surrogate faithful? Draw 500 fresh random masks, evaluate the CNN on the
# masked images (`mask_image` applies patch masks), and compare with the surrogate's
# predictions: R^2 close to 1 means the sparse spectrum *is* the model's response to
# removing patches.

# %%
held_out = torch.rand(500, one.n_features, generator=torch.Generator().manual_seed(1)) < 0.5
with torch.inference_mode():
    truth = cnn(mask_image(image[0], feature_mask[0], held_out))[:, predicted]
r2 = one.r2(held_out, truth.double())
print(f"R^2 of the surrogate on 500 held-out masks: {r2:.4f}")
assert r2 > 0.95

# %% [markdown]
# The strongest interactions, and the Shapley values of the patches. The pairs are patches
# whose effect depends on each other: a stroke only "counts" when its continuation is there.

# %%
for ids, value in one.top_k(6):
    print(f"  {' x '.join(names[i] for i in ids)}: {value:+.3f}")
sv = one.first_order("SV")
print("Shapley values of the patches (4 x 4 grid):")
print(sv.reshape(4, 4).numpy().round(2))

# %% [markdown]
# ## Pictures
#
# `plot_image` draws the patches' first-order values over the image (red raises the logit,
# blue lowers it) and links the strongest patch pairs. We draw the digit dark on white
# (`1 - image`) so the heatmap stays readable, next to the plain input. `visualize_image` is
# Captum's `visualize_image_attr` fed with the Shapley values spread over the pixels.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 4.6), width_ratios=(1, 1.25))
left.imshow(image[0, 0], cmap="gray_r")
left.set_title(f"input (predicted {predicted})")
left.set_axis_off()
plot_image(one, 1 - image[0], feature_mask, n_pairs=4, ax=right)
fig.tight_layout()
fig.savefig(OUT / "03_vision_patches.png", dpi=130, bbox_inches="tight")
fig, ax = visualize_image(one, image[0], feature_mask, index="SV")
fig.savefig(OUT / "03_captum_image.png", dpi=100, bbox_inches="tight")
plt.close("all")
print("wrote", sorted(p.name for p in OUT.glob("03_*.png")))
