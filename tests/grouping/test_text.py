from __future__ import annotations

import pytest
import torch

from torchspex.decoders.exhaustive import all_masks
from torchspex.grouping import (
    TextFeatures,
    chat_features,
    sentence_spans,
    text_features,
    word_label,
)

TEXT = "Tokenization works wonderfully.  It's Paris!\nNew line here"
FAMILIES = ["wordpiece", "byte_bpe", "sentencepiece"]


def check_alignment(feats: TextFeatures) -> None:
    """Tokens of a feature overlap its span, and together cover its non-space characters."""
    for j, (start, end) in enumerate(feats.spans):
        covered = torch.zeros(len(feats.text), dtype=torch.bool)
        for a, b in feats.offsets[feats.feature_tokens(j)].tolist():
            assert a < end and b > start, (feats.labels[j], a, b)
            covered[a:b] = True
        chars = [i for i in range(start, end) if not feats.text[i].isspace()]
        assert bool(covered[chars].all()), feats.labels[j]


@pytest.mark.parametrize("family", FAMILIES)
def test_words_are_the_text_words(family, request):
    tokenizer = request.getfixturevalue(family)
    feats = text_features(TEXT, tokenizer)
    assert feats.labels == ["Tokenization", "works", "wonderfully", "It's", "Paris", "New",
                            "line", "here"]  # punctuation around a word is not in its label
    assert [feats.text[a:b] for a, b in feats.spans] == TEXT.split()  # spans: as written
    assert feats.n_features == feats.n_itp_features == len(TEXT.split())
    assert feats.token_features.shape == feats.input_ids.shape
    # Every feature has tokens, and no token is in two features.
    assert set(feats.token_features[feats.token_features >= 0].tolist()) == set(
        range(feats.n_features)
    )
    check_alignment(feats)


@pytest.mark.parametrize("family", FAMILIES)
def test_sentences_and_tokens(family, request):
    tokenizer = request.getfixturevalue(family)
    sentences = text_features(TEXT, tokenizer, level="sentence")
    assert sentences.labels == ["Tokenization works wonderfully.", "It's Paris!", "New line here"]
    check_alignment(sentences)
    tokens = text_features(TEXT, tokenizer, level="token")
    # Whitespace-only tokens are no feature; tokens sharing a character (SentencePiece's
    # leading "▁" on "T") share one.
    spaces = [i for i, (a, b) in enumerate(tokens.offsets.tolist()) if not TEXT[a:b].strip()]
    assert bool((tokens.token_features[spaces] == -1).all())
    assert tokens.n_features <= int((tokens.token_features >= 0).sum())
    assert "".join(tokens.labels) == "".join(TEXT.split())  # labels are the text as written
    check_alignment(tokens)


def test_wordpiece_subwords_and_special_tokens(wordpiece):
    feats = text_features("Tokenization rocks", wordpiece)
    assert feats.tokens[0] == "[CLS]" and feats.tokens[-1] == "[SEP]"
    assert feats.token_features[[0, -1]].tolist() == [-1, -1]
    first_word = feats.feature_tokens(0)
    assert len(first_word) > 1 and feats.tokens[first_word[1]].startswith("##")


def test_special_tokens_inside_the_text_are_never_features(byte_bpe):
    feats = text_features("Hello <|endoftext|> world", byte_bpe)
    assert feats.labels == ["Hello", "world"]
    special = feats.input_ids == byte_bpe.eos_token_id
    assert bool(special.any()) and bool((feats.token_features[special] == -1).all())


def test_tokens_shared_by_two_words_merge_them(byte_bpe):
    # Every character is a "word", but BPE tokens span several characters: those merge.
    feats = text_features("capital capital", byte_bpe, word_pattern=r"\S")
    assert "".join(feats.labels) == "capitalcapital"
    assert feats.n_features < 14
    check_alignment(feats)


def test_user_spans_and_regions(sentencepiece):
    text = "Paris is the capital of France."
    feats = text_features(text, sentencepiece, spans=["Paris", (13, 20), "France"])
    assert feats.labels == ["Paris", "capital", "France"]
    outside = feats.token_features == -1
    assert bool(outside.any())  # "is the", "of", "." are kept in every mask
    region = text_features(text, sentencepiece, regions=["the capital of"])
    assert region.labels == ["the", "capital", "of"]


def test_word_labels_drop_surrounding_punctuation(byte_bpe):
    feats = text_features("Our hotel wasn't cheap, (beach.) U.S. ... e-mail!", byte_bpe)
    assert feats.labels == ["Our", "hotel", "wasn't", "cheap", "beach", "U.S.", "...", "e-mail"]
    assert word_label("\u201cquoted\u201d") == "quoted" and word_label("") == ""
    sentences = text_features("It is cheap, and nice.", byte_bpe, level="sentence")
    assert sentences.labels == ["It is cheap, and nice."]  # sentences keep their punctuation


def test_sentence_spans_keep_quotes_and_newlines():
    text = 'He said "stop!" Then left.\n\nDone'
    assert [text[a:b] for a, b in sentence_spans(text)] == ['He said "stop!"', "Then left.", "Done"]


def test_token_baselines_replace_every_token_of_a_removed_word(wordpiece):
    feats = text_features("Tokenization rocks", wordpiece, baseline="mask")
    assert feats.baseline == wordpiece.mask_token_id
    batch = feats.masked_inputs(torch.tensor([[False, True], [True, True]]))
    ids = batch["input_ids"]
    word0 = feats.feature_tokens(0)
    assert bool((ids[0, word0] == wordpiece.mask_token_id).all())
    assert ids[1].tolist() == feats.input_ids.tolist()
    assert bool((batch["attention_mask"] == 1).all())
    assert text_features("a b", wordpiece, baseline="pad").baseline == wordpiece.pad_token_id
    assert text_features("a b", wordpiece, baseline="unk").baseline == wordpiece.unk_token_id
    assert text_features("a b", wordpiece, baseline="[SEP]").baseline == wordpiece.sep_token_id
    assert text_features("a b", wordpiece, baseline=7).baseline == 7


@pytest.mark.parametrize("side", ["left", "right"])
def test_remove_deletes_tokens_and_pads(byte_bpe, side):
    feats = text_features(TEXT, byte_bpe)
    masks = all_masks(feats.n_features)[::37]
    batch = feats.masked_inputs(masks, padding_side=side)
    keep = feats.token_keep(masks)
    width = int(keep.sum(1).max())
    assert batch["input_ids"].shape == (masks.shape[0], width)
    for row, k in enumerate(keep):
        expected = feats.input_ids[k].tolist()
        att = batch["attention_mask"][row].bool()
        assert batch["input_ids"][row][att].tolist() == expected
        pad = torch.arange(width) < width - len(expected) if side == "left" else (
            torch.arange(width) >= len(expected)
        )
        assert att.tolist() == (~pad).tolist()


def test_remove_in_place_for_encoders(wordpiece):
    feats = text_features("Tokenization rocks", wordpiece)
    batch = feats.masked_inputs(torch.tensor([[False, True]]), padding_side=None)
    assert batch["input_ids"][0].tolist() == feats.input_ids.tolist()
    assert batch["attention_mask"][0].tolist() == feats.token_keep(
        torch.tensor([[False, True]])
    )[0].long().tolist()


def test_captum_interface(wordpiece):
    feats = text_features("Tokenization rocks", wordpiece, baseline="unk")
    assert feats.values == ["Tokenization", "rocks"]
    assert feats.to_tensor().tolist() == [[1.0, 1.0]]
    assert feats.to_model_input().tolist() == [feats.input_ids.tolist()]
    perturbed = feats.to_model_input(torch.tensor([[1.0, 0.0]]))
    assert perturbed[0, feats.feature_tokens(1)].tolist() == [wordpiece.unk_token_id]
    attr = torch.randn(3, 2)
    assert feats.format_attr(attr) is attr


def test_chat_scaffolding_is_never_a_feature(byte_bpe):
    tok = byte_bpe
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is Paris?"},
    ]
    feats = chat_features(messages, tok)
    assert feats.labels == ["Where", "is", "Paris"]
    assert feats.text.startswith("<|system|>Be brief.") and feats.text.endswith("<|assistant|>")
    both = chat_features(messages, tok, roles=("system", "user"))
    assert both.labels == ["Be", "brief", "Where", "is", "Paris"]


def test_chat_contents_are_placed_by_the_template_not_by_a_search(byte_bpe):
    # a template with a default system prompt that repeats the user's words, and a role header
    # that equals a content: a search of the rendered text used to find them there instead
    tok = byte_bpe
    tok.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|system|>You are a helpful assistant."
        "<|endoftext|>{% endif %}"
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|endoftext|>{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    feats = chat_features([{"role": "user", "content": "You are a helpful assistant."}], tok)
    user_at = feats.text.index("user: ") + len("user: ")
    assert feats.labels == ["You", "are", "a", "helpful", "assistant"]
    assert all(start >= user_at for start, _ in feats.spans)
    feats = chat_features([{"role": "user", "content": "user"}], tok)
    assert feats.labels == ["user"] and feats.spans[0][0] == feats.text.index("user: user") + 6
    # a template that trims contents: the trimmed words are the features
    tok.chat_template = "{% for m in messages %}[{{ m['content'] | trim }}]{% endfor %}"
    assert chat_features([{"role": "user", "content": "  hi there "}], tok).labels == ["hi",
                                                                                      "there"]
    # one that leaves a system message out: fine unless that message is to be explained
    tok.chat_template = ("{% for m in messages %}{% if m['role'] != 'system' %}"
                         "[{{ m['content'] }}]{% endif %}{% endfor %}")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."}]
    assert chat_features(messages, tok).labels == ["Hi"]
    with pytest.raises(ValueError, match="does not appear"):
        chat_features(messages, tok, roles=("system", "user"))
    # one that changes contents
    tok.chat_template = "{% for m in messages %}[{{ m['content'] | upper }}]{% endfor %}"
    with pytest.raises(ValueError, match="changes the messages' contents"):
        chat_features([{"role": "user", "content": "hi"}], tok)


def test_errors(wordpiece, byte_bpe):
    with pytest.raises(ValueError, match="`text`"):
        text_features("", wordpiece)
    with pytest.raises(ValueError, match="`level`"):
        text_features("a b", wordpiece, level="paragraph")
    with pytest.raises(ValueError, match="either `level` or `spans`"):
        text_features("a b", wordpiece, level="sentence", spans=["a"])
    with pytest.raises(ValueError, match="in order"):
        text_features("a b", wordpiece, spans=["b", "a"])
    with pytest.raises(ValueError, match="overlap"):
        text_features("a b c", wordpiece, spans=[(0, 3), (2, 5)])
    with pytest.raises(ValueError, match="no mask token"):
        text_features("a b", byte_bpe, baseline="mask")
    with pytest.raises(ValueError, match="vocabulary"):
        text_features("a b", wordpiece, baseline="notatoken")
    with pytest.raises(TypeError, match="baseline"):
        text_features("a b", wordpiece, baseline=1.5)
    with pytest.raises(TypeError, match="tokenizer"):
        text_features("a b", object())
    feats = text_features("a b", wordpiece)
    with pytest.raises(ValueError, match="masks"):
        feats.masked_inputs(torch.ones(1, 3, dtype=torch.bool))


def test_token_id_baselines_and_spans_are_checked(wordpiece, byte_bpe):
    # an id outside the vocabulary was accepted and failed inside the model's embedding
    for bad in (-5, len(byte_bpe), 10**6):
        with pytest.raises(ValueError, match=r"0\.\.299"):
            text_features("a b", byte_bpe, baseline=bad)
    assert text_features("a b", byte_bpe, baseline=len(byte_bpe) - 1).baseline == 299
    # a span outside the regions used to become a feature all the same
    with pytest.raises(ValueError, match=r"\['Paris'\] is not inside any region"):
        text_features("Paris. Rome is nice.", wordpiece, regions=["Rome is nice."],
                      spans=["Paris"])  # fmt: skip
    inside = text_features("Paris. Rome is nice.", wordpiece, regions=["Rome is nice."],
                           spans=["Rome", "nice"])  # fmt: skip
    assert inside.labels == ["Rome", "nice"]


def test_a_raw_tokenizer_with_fixed_padding_and_truncation(minilm_path, wordpiece):
    # MiniLM's tokenizer.json pads to 128 and truncates at 128: the pads were kept as text
    # (with attention) and every word past the limit was dropped without a word
    tokenizers = pytest.importorskip("tokenizers")
    raw = tokenizers.Tokenizer.from_file(minilm_path + "/tokenizer.json")
    assert raw.padding is not None and raw.truncation is not None
    long = " ".join(f"word{i}" for i in range(150))
    for text in ("Hello world", long):
        got, want = text_features(text, raw), text_features(text, wordpiece)
        assert got.n_features == want.n_features
        assert torch.equal(got.input_ids, want.input_ids)
        assert torch.equal(got.token_features, want.token_features)
    assert raw.padding is not None and raw.truncation is not None  # the caller's, untouched
