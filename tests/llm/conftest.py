"""A tiny random GPT-2 and a byte-level BPE tokenizer trained here, both offline."""

from __future__ import annotations

import pytest
import torch

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! It's a sunny day in the park.",
    "Paris is the capital of France and Rome is the capital of Italy.",
] * 10


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS, vocab_size=300, min_frequency=1, show_progress=False,
        special_tokens=["<|endoftext|>"],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )


@pytest.fixture(scope="session")
def gpt2(gpt2_tokenizer):
    transformers = pytest.importorskip("transformers")
    eos = gpt2_tokenizer.eos_token_id
    config = transformers.GPT2Config(
        vocab_size=len(gpt2_tokenizer), n_positions=64, n_embd=32, n_layer=3, n_head=2,
        bos_token_id=eos, eos_token_id=eos,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run ~10x faster single-threaded on the shared 2-core CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
