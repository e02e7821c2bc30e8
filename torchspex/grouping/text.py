"""Text features: tokens grouped into words, sentences or user spans, from character offsets.

Grouping goes through the tokenizer's character offsets, never through its sub-token markers,
so it works the same for WordPiece (``##``), byte-level BPE (``Ġ``) and SentencePiece (``▁``)
tokenizers. A token belongs to every feature whose character span it overlaps; features that
share a token are merged, because a token cannot be half removed. Special tokens and any text
outside the feature ``regions`` (e.g. chat-template scaffolding) are never features: they are
kept in every masked input.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "BASELINES",
    "LEVELS",
    "TextFeatures",
    "chat_features",
    "sentence_spans",
    "text_features",
    "word_label",
    "word_spans",
]

#: Named baselines: replace removed tokens by the mask / pad / unknown token, or remove them.
BASELINES: tuple[str, ...] = ("remove", "mask", "pad", "unk")
#: Feature granularities of :func:`text_features`.
LEVELS: tuple[str, ...] = ("token", "word", "sentence")

_SENTENCE = re.compile(r"\S.*?(?:[.!?]+[\"')\]]*(?=\s|\Z)|(?=\n)|\Z)", re.S)

def _is_punct(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def word_label(word: str) -> str:
    """A word without the punctuation around it, for display: ``"(cheap,"`` -> ``"cheap"``.

    Inner punctuation stays (``"wasn't"``, ``"e-mail"``), and so does the final period of an
    abbreviation with inner periods (``"U.S."``); a word that is all punctuation is kept whole.

    Example:
        >>> [word_label(w) for w in ["cheap,", "(beach.)", "wasn't", "U.S.", "..."]]
        ['cheap', 'beach', "wasn't", 'U.S.', '...']
    """
    start, end = 0, len(word)
    while start < end and _is_punct(word[start]):
        start += 1
    while end > start and _is_punct(word[end - 1]):
        end -= 1
    if start == end:
        return word
    if end < len(word) and word[end] == "." and "." in word[start:end]:
        end += 1  # abbreviation: "U.S." keeps its last period
    return word[start:end]



def word_spans(text: str, pattern: str = r"\S+") -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the words of ``text``.

    Args:
        text: the text.
        pattern: regular expression of one word; the default keeps punctuation attached
            (``"world!"``); ``r"\\w+|[^\\w\\s]+"`` splits it off.

    Example:
        >>> word_spans("Hello big world!")
        [(0, 5), (6, 9), (10, 16)]
    """
    return [m.span() for m in re.finditer(pattern, text) if m.end() > m.start()]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``: split after ``.``, ``!``, ``?`` and newlines.

    Example:
        >>> text = "It rains. Does it?\\nYes"
        >>> [text[a:b] for a, b in sentence_spans(text)]
        ['It rains.', 'Does it?', 'Yes']
    """
    spans = []
    for m in _SENTENCE.finditer(text):
        start, end = m.span()
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


@dataclass
class TextFeatures:
    """A tokenized text whose tokens are grouped into interpretable features.

    Built by :func:`text_features` or :func:`chat_features`. It also offers Captum's
    ``InterpretableInput`` interface (``n_itp_features``, ``values``, ``to_tensor``,
    ``to_model_input``, ``format_attr``), so it can stand in for ``TextTokenInput``.

    Attributes:
        text: the text that was tokenized.
        input_ids: ``int64 [L]`` token ids of the unperturbed text.
        token_features: ``int64 [L]`` feature of each token; ``-1`` for tokens that are never
            features (special tokens, whitespace-only tokens, text outside the regions).
        labels: one human-readable string per feature: the text it covers, for words without
            the punctuation around them (:func:`word_label`); ``text[a:b]`` over ``spans``
            gives the text exactly as written.
        spans: ``(start, end)`` character span of each feature in ``text``.
        baseline: ``"remove"`` or the token id that replaces each token of a removed feature.
        pad_token_id: id used for padding (the tokenizer's pad, else eos, else 0).
        offsets: ``int64 [L, 2]`` character span of each token (``(0, 0)`` for special ones).
        tokens: the token strings.
    """

    text: str
    input_ids: Tensor
    token_features: Tensor
    labels: list[str]
    spans: list[tuple[int, int]]
    baseline: str | int = "remove"
    pad_token_id: int = 0
    offsets: Tensor | None = None
    tokens: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ facts
    @property
    def n_features(self) -> int:
        """Number of features."""
        return len(self.labels)

    @property
    def n_itp_features(self) -> int:
        """Captum's name for :attr:`n_features`."""
        return self.n_features

    @property
    def values(self) -> list[str]:
        """Captum's name for :attr:`labels`."""
        return self.labels

    def feature_tokens(self, feature: int) -> Tensor:
        """Positions ``int64 [k]`` of the tokens of one feature."""
        return torch.nonzero(self.token_features == feature).squeeze(1)

    # ------------------------------------------------------------------ masking
    def _check_masks(self, masks: Tensor) -> Tensor:
        masks = torch.as_tensor(masks)
        if masks.dim() == 1:
            masks = masks.unsqueeze(0)
        if masks.dim() != 2 or masks.shape[1] != self.n_features:
            raise ValueError(
                f"`masks` must have shape [m, {self.n_features}] (one column per feature); got "
                f"{tuple(masks.shape)}."
            )
        return masks.bool() if masks.dtype == torch.bool else masks == 1

    def token_keep(self, masks: Tensor) -> Tensor:
        """Which tokens each mask keeps: ``bool [m, L]`` from feature masks ``bool [m, n]``."""
        masks = self._check_masks(masks)
        feats = self.token_features.to(masks.device)
        keep = masks[:, feats.clamp_min(0)]
        return keep | (feats < 0)

    def masked_inputs(
        self, masks: Tensor, padding_side: str | None = "left", device: Any = None
    ) -> dict[str, Tensor]:
        """Model inputs for a batch of feature masks.

        Token baselines replace every token of a removed feature by the baseline id (the
        length is kept). ``baseline="remove"`` either zeroes the attention mask at removed
        tokens in place (``padding_side=None``: encoder models) or deletes them and pads the
        batch on ``padding_side`` (``"left"`` for decoder-only models, ``"right"``).

        Args:
            masks: ``bool [m, n_features]``, True = feature kept.
            padding_side: ``"left"``, ``"right"`` or ``None`` (see above).
            device: where to build the tensors (default: the masks' device).

        Returns:
            ``{"input_ids": int64 [m, L'], "attention_mask": int64 [m, L']}``.

        Example:
            >>> feats = TextFeatures("a b", torch.tensor([7, 8]), torch.tensor([0, 1]),
            ...                      ["a", "b"], [(0, 1), (2, 3)], baseline=0)
            >>> feats.masked_inputs(torch.tensor([[True, False]]))["input_ids"]
            tensor([[7, 0]])
        """
        if padding_side not in ("left", "right", None):
            raise ValueError(
                f"`padding_side` must be one of ('left', 'right', None); got {padding_side!r}."
            )
        masks = self._check_masks(masks)
        device = masks.device if device is None else torch.device(device)
        keep = self.token_keep(masks).to(device)
        ids = self.input_ids.to(device).expand_as(keep)
        if self.baseline != "remove":
            return {
                "input_ids": torch.where(keep, ids, torch.full_like(ids, int(self.baseline))),
                "attention_mask": torch.ones_like(ids),
            }
        if padding_side is None:
            return {"input_ids": ids.clone(), "attention_mask": keep.long()}
        # Stable sort moves the kept tokens to one side in their original order.
        key = keep.int() if padding_side == "left" else (~keep).int()
        order = torch.sort(key, dim=1, stable=True).indices
        attention = torch.gather(keep, 1, order)
        ids = torch.where(attention, torch.gather(ids, 1, order), self.pad_token_id)
        width = int(attention.sum(dim=1).max()) if attention.numel() else 0
        cols = slice(attention.shape[1] - width, None) if padding_side == "left" else slice(width)
        return {"input_ids": ids[:, cols].contiguous(), "attention_mask": attention[:, cols].long()}

    # ------------------------------------------------------------------ Captum interface
    def to_tensor(self) -> Tensor:
        """The all-kept interpretable vector, ``float [1, n_features]`` (Captum interface)."""
        return torch.ones(1, self.n_features)

    def to_model_input(self, perturbed_tensor: Tensor | None = None) -> Tensor:
        """Token ids ``int64 [k, L']`` for perturbed vectors ``[k, n]`` (1 = kept).

        With ``baseline="remove"`` the removed tokens are deleted and the rows left-padded
        with :attr:`pad_token_id` (use :meth:`masked_inputs` to get the attention mask too).
        """
        if perturbed_tensor is None:
            return self.input_ids.unsqueeze(0)
        return self.masked_inputs(perturbed_tensor, padding_side="left")["input_ids"]

    def format_attr(self, itp_attr: Tensor) -> Tensor:
        """Identity (Captum interface)."""
        return itp_attr

    def __repr__(self) -> str:
        return (
            f"TextFeatures(n_features={self.n_features}, n_tokens={self.input_ids.numel()}, "
            f"baseline={self.baseline!r}, labels={self.labels!r})"
        )


# ---------------------------------------------------------------------- tokenizer access
def _encode(
    text: str, tokenizer: Any, add_special_tokens: bool
) -> tuple[list[int], list[tuple[int, int]], list[bool], list[str]]:
    """ids, character offsets, special-token flags and token strings, for any tokenizer."""
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "token_to_id") and not callable(
        getattr(tokenizer, "convert_tokens_to_ids", None)
    ):  # a `tokenizers.Tokenizer`
        if getattr(tokenizer, "padding", None) is not None or getattr(
            tokenizer, "truncation", None
        ) is not None:
            # a tokenizer.json may fix padding / truncation (MiniLM's: 128 tokens both): pads
            # would be kept as text and words past the limit dropped. Encode with a copy that
            # does neither (the caller's tokenizer is left as it is), as a transformers
            # tokenizer does by default.
            tokenizer = type(tokenizer).from_str(tokenizer.to_str())
            tokenizer.no_padding()
            tokenizer.no_truncation()
        enc = tokenizer.encode(text, add_special_tokens=add_special_tokens)
        added = tokenizer.get_added_tokens_decoder()
        special_ids = {i for i, tok in added.items() if getattr(tok, "special", False)}
        ids, offsets, tokens = list(enc.ids), [tuple(o) for o in enc.offsets], list(enc.tokens)
        return ids, offsets, _special(text, enc.special_tokens_mask, ids, offsets, tokens,
                                      special_ids), tokens
    if not callable(tokenizer):
        raise TypeError(
            "`tokenizer` must be a transformers tokenizer or a tokenizers.Tokenizer; got "
            f"{type(tokenizer).__name__}."
        )
    try:
        enc = tokenizer(
            text, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
    except NotImplementedError as err:
        raise TypeError(
            "`tokenizer` must provide character offsets (return_offsets_mapping=True); "
            f"{type(tokenizer).__name__} does not. Load a fast tokenizer "
            "(AutoTokenizer.from_pretrained(..., use_fast=True))."
        ) from err
    ids = list(enc["input_ids"])
    # The mask flags only the tokens the tokenizer added; special tokens typed in the text
    # (e.g. by a chat template) are caught by id.
    special_ids = set(getattr(tokenizer, "all_special_ids", ()))
    flags = enc.get("special_tokens_mask", [0] * len(ids))
    tokens = list(tokenizer.convert_ids_to_tokens(ids))
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    return ids, offsets, _special(text, flags, ids, offsets, tokens, special_ids), tokens


def _special(
    text: str, flags: Sequence[int], ids: Sequence[int], offsets: Sequence[tuple[int, int]],
    tokens: Sequence[str], special_ids: set[int],
) -> list[bool]:
    """Added special tokens, plus special tokens written out in the text (e.g. by a chat
    template); an unknown token standing for real text (``<unk>`` for "N") is not special."""
    return [
        bool(flag) or (i in special_ids and text[a:b] == tok)
        for flag, i, (a, b), tok in zip(flags, ids, offsets, tokens)
    ]


def _token_id(tokenizer: Any, token: str) -> int | None:
    if hasattr(tokenizer, "convert_tokens_to_ids") and hasattr(tokenizer, "get_vocab"):
        return tokenizer.get_vocab().get(token)
    if hasattr(tokenizer, "token_to_id"):
        return tokenizer.token_to_id(token)
    return None


def _vocab_size(tokenizer: Any) -> int | None:
    """Token ids the tokenizer knows, added tokens included (``None``: it does not say)."""
    size = getattr(tokenizer, "get_vocab_size", None)  # a `tokenizers.Tokenizer`
    if callable(size):
        return int(size(with_added_tokens=True))
    try:
        return len(tokenizer)
    except TypeError:
        return None


def _resolve_baseline(tokenizer: Any, baseline: str | int) -> str | int:
    if isinstance(baseline, bool):
        raise TypeError(f"`baseline` must be one of {BASELINES}, a token or a token id; got bool.")
    if isinstance(baseline, int):
        size = _vocab_size(tokenizer)
        if baseline < 0 or (size is not None and baseline >= size):
            raise ValueError(
                "`baseline` as a token id must be "
                f"{'>= 0' if size is None else f'in 0..{size - 1} (the tokenizer vocabulary)'}; "
                f"got {baseline}."
            )
        return baseline
    if not isinstance(baseline, str):
        raise TypeError(
            f"`baseline` must be one of {BASELINES}, a token or a token id; got "
            f"{type(baseline).__name__}."
        )
    if baseline == "remove":
        return baseline
    if baseline in ("mask", "pad", "unk"):
        token_id = getattr(tokenizer, f"{baseline}_token_id", None)
        if token_id is None:
            raise ValueError(
                f"`baseline` must name a token the tokenizer has; got {baseline!r} but the "
                f"tokenizer has no {baseline} token. Use baseline='remove', another of "
                f"{BASELINES}, or pass a token string or id."
            )
        return int(token_id)
    token_id = _token_id(tokenizer, baseline)
    if token_id is None:
        raise ValueError(
            f"`baseline` must be one of {BASELINES}, a token in the vocabulary or a token id; "
            f"got {baseline!r}."
        )
    return int(token_id)


def _pad_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


# ---------------------------------------------------------------------- spans
def _locate(text: str, spans: Sequence[Any], name: str) -> list[tuple[int, int]]:
    out, cursor = [], 0
    for span in spans:
        if isinstance(span, str):
            start = text.find(span, cursor)
            if start < 0 or not span:
                raise ValueError(
                    f"`{name}` strings must occur in the text in order; got {span!r}, not found "
                    f"after character {cursor}."
                )
            out.append((start, start + len(span)))
            cursor = start + len(span)
        elif isinstance(span, (tuple, list)) and len(span) == 2:
            start, end = int(span[0]), int(span[1])
            if not 0 <= start < end <= len(text):
                raise ValueError(
                    f"`{name}` ranges must satisfy 0 <= start < end <= len(text)={len(text)}; "
                    f"got {tuple(span)}."
                )
            out.append((start, end))
        else:
            raise TypeError(
                f"`{name}` must hold substrings or (start, end) character ranges; got {span!r}."
            )
    out.sort()
    for (a0, a1), (b0, _) in itertools.pairwise(out):
        if b0 < a1:
            raise ValueError(f"`{name}` must not overlap; got {(a0, a1)} and one starting at {b0}.")
    return out


def _group(
    offsets: Tensor, usable: Tensor, spans: list[tuple[int, int]]
) -> tuple[Tensor, list[tuple[int, int]]]:
    """Token -> feature ids; spans sharing a token are merged; spans without tokens dropped."""
    n_tokens = offsets.shape[0]
    if not spans:
        return torch.full((n_tokens,), -1, dtype=torch.long), []
    bounds = torch.tensor(spans, dtype=torch.long)  # [F, 2], sorted, disjoint
    start, end = offsets[:, 0:1], offsets[:, 1:2]
    overlap = (start < bounds[:, 1]) & (end > bounds[:, 0]) & (end > start) & usable[:, None]
    has = overlap.any(dim=1)
    first = torch.where(has, overlap.int().argmax(dim=1), 0)
    last = torch.where(has, bounds.shape[0] - 1 - overlap.flip(1).int().argmax(dim=1), 0)
    # link[j]: spans j and j+1 share a token -> merge them.
    pos = torch.arange(bounds.shape[0] - 1)
    link = ((first[:, None] <= pos) & (last[:, None] > pos) & has[:, None]).any(dim=0)
    component = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(~link, 0)])
    populated = torch.zeros(bounds.shape[0], dtype=torch.bool)
    populated[first[has]] = True
    alive = torch.zeros(int(component[-1]) + 1, dtype=torch.bool)
    alive[component[populated]] = True
    new_id = torch.cumsum(alive.long(), 0) - 1
    token_features = torch.where(has, new_id[component[first]], -1)
    merged = []
    for c in torch.nonzero(alive).squeeze(1).tolist():
        members = torch.nonzero(component == c).squeeze(1)
        merged.append((int(bounds[members[0], 0]), int(bounds[members[-1], 1])))
    return token_features, merged


def text_features(
    text: str,
    tokenizer: Any,
    level: str = "word",
    *,
    spans: Sequence[str | tuple[int, int]] | None = None,
    regions: Sequence[str | tuple[int, int]] | None = None,
    baseline: str | int = "remove",
    add_special_tokens: bool = True,
    word_pattern: str = r"\S+",
) -> TextFeatures:
    """Tokenizes ``text`` and groups its tokens into features.

    Args:
        text: the text to explain.
        tokenizer: a fast ``transformers`` tokenizer or a ``tokenizers.Tokenizer`` (anything
            that returns character offsets).
        level: ``"word"`` (whitespace-separated, see ``word_pattern``), ``"sentence"`` or
            ``"token"`` (every non-special token).
        spans: user-given features instead of ``level``: substrings (found left to right) or
            ``(start, end)`` character ranges; text outside them is never a feature.
        regions: only text inside these substrings / character ranges yields features (e.g. the
            user turns of a chat); default the whole text.
        baseline: what a removed feature becomes: ``"remove"`` (deleted, or hidden by the
            attention mask), ``"mask"``, ``"pad"``, ``"unk"`` (that special token), another
            token string, or a token id.
        add_special_tokens: whether the tokenizer adds its special tokens (they are never
            features).
        word_pattern: regular expression of one word for ``level="word"``.

    Returns:
        :class:`TextFeatures`; ``labels`` are the sentences / spans / tokens as written and
        the words without the punctuation around them (``"cheap,"`` -> ``"cheap"``, see
        :func:`word_label`); ``spans`` locate the exact text.

    Raises:
        ValueError: unknown ``level`` or ``baseline``, ``spans`` not in the text or outside
            ``regions``, or no feature at all.
        TypeError: a tokenizer without character offsets.

    Example:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1, "there": 2}, "[UNK]"))
        >>> tok.pre_tokenizer = pre_tokenizers.Whitespace()
        >>> feats = text_features("hi there", tok, baseline="[UNK]")
        >>> feats.labels, feats.token_features.tolist()
        (['hi', 'there'], [0, 1])
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"`text` must be a non-empty str; got {text!r}.")
    if spans is None and level not in LEVELS:
        raise ValueError(f"`level` must be one of {LEVELS}; got {level!r}.")
    if spans is not None and level != "word":
        raise ValueError(
            "Pass either `level` or `spans`, not both; `spans` defines the features itself."
        )
    base = _resolve_baseline(tokenizer, baseline)
    ids, offsets_list, special_list, tokens = _encode(text, tokenizer, add_special_tokens)
    offsets = torch.tensor(offsets_list, dtype=torch.long).reshape(-1, 2)
    special = torch.tensor(special_list, dtype=torch.bool).reshape(-1)
    usable = ~special
    bounds = [(0, len(text))] if regions is None else _locate(text, regions, "regions")
    if spans is not None:
        feature_spans = _locate(text, spans, "spans")
        outside = [text[a:b] for a, b in feature_spans
                   if not any(r0 <= a and b <= r1 for r0, r1 in bounds)]  # fmt: skip
        if regions is not None and outside:
            raise ValueError(
                f"`spans` must lie inside `regions` (only text there yields features); "
                f"{outside[:3]!r} {'is' if len(outside) == 1 else 'are'} not inside any region."
            )
    elif level == "token":
        stripped = set()
        for (s, e), ok in zip(offsets_list, usable.tolist()):
            piece = text[s:e]
            if ok and piece.strip():
                a, b = s + len(piece) - len(piece.lstrip()), s + len(piece.rstrip())
                if any(a < r1 and b > r0 for r0, r1 in bounds):
                    stripped.add((a, b))
        # Tokens sharing characters (e.g. one multi-byte character) end up in one feature.
        feature_spans = []
        for a, b in sorted(stripped):
            if feature_spans and a < feature_spans[-1][1]:
                feature_spans[-1] = (feature_spans[-1][0], max(b, feature_spans[-1][1]))
            else:
                feature_spans.append((a, b))
    else:
        feature_spans = []
        for r0, r1 in bounds:
            found = word_spans(text[r0:r1], word_pattern) if level == "word" else (
                sentence_spans(text[r0:r1])
            )
            feature_spans.extend((r0 + a, r0 + b) for a, b in found)
    token_features, merged = _group(offsets, usable, feature_spans)
    if not merged:
        raise ValueError(
            f"`text` yields no features at level={level!r}: no token overlaps a "
            f"{'span' if spans is not None else level} inside the regions."
        )
    return TextFeatures(
        text=text,
        input_ids=torch.tensor(ids, dtype=torch.long),
        token_features=token_features,
        labels=[
            word_label(text[a:b]) if spans is None and level == "word" else text[a:b]
            for a, b in merged
        ],
        spans=merged,
        baseline=base,
        pad_token_id=_pad_id(tokenizer),
        offsets=offsets,
        tokens=tokens,
    )


def _content_spans(
    messages: list[Mapping[str, str]], tokenizer: Any, add_generation_prompt: bool,
    template_kwargs: dict[str, Any],
) -> tuple[str, list[tuple[int, int] | None]]:
    """The rendered chat and where each message's content sits in it (``None``: empty content).

    The chat is rendered once more with every content replaced by a marker of its own, so each
    content's place comes from the template itself, not from a search of the rendered text (a
    search finds a content that the template's own text repeats, such as a default system
    prompt, at the wrong place). The markers' rendering with the contents put back must be the
    chat's rendering, with the contents as given or stripped of surrounding whitespace (a
    template's ``| trim``); a template that changes contents otherwise raises.
    """

    def render(msgs: list[Mapping[str, str]]) -> str:
        return str(tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=add_generation_prompt,
            **template_kwargs))  # fmt: skip

    text = render(messages)
    marks = [f"\ue000{i}\ue001" if m.get("content") else None for i, m in enumerate(messages)]
    marked = render([{**m, "content": mark} if mark is not None else m
                     for m, mark in zip(messages, marks)])  # fmt: skip
    for strip in (False, True):
        spans: list[tuple[int, int] | None] = []
        pieces, at, length = [], 0, 0
        for message, mark in zip(messages, marks):
            if mark is None:
                spans.append(None)
                continue
            where = marked.find(mark, at)
            if where < 0 and mark not in marked:  # a message the template leaves out
                spans.append(None)
                continue
            if where < 0 or marked.count(mark) != 1:  # out of order, or repeated
                break
            content = str(message["content"])
            inserted = content.strip() if strip else content
            pieces.append(marked[at:where])
            length += where - at
            spans.append((length, length + len(inserted)))
            pieces.append(inserted)
            length += len(inserted)
            at = where + len(mark)
        else:
            if "".join(pieces) + marked[at:] == text:
                return text, spans
    raise ValueError(
        "the chat template changes the messages' contents (or repeats them), so their places "
        "in the rendered prompt are not known; render the prompt yourself and pass it to "
        "text_features with `regions=` around the contents to explain."
    )


def chat_features(
    messages: Sequence[Mapping[str, str]],
    tokenizer: Any,
    level: str = "word",
    *,
    roles: Sequence[str] = ("user",),
    add_generation_prompt: bool = True,
    baseline: str | int = "remove",
    word_pattern: str = r"\S+",
    **template_kwargs: Any,
) -> TextFeatures:
    """Features from the messages of a chat, rendered with the tokenizer's chat template.

    Only the content of messages whose role is in ``roles`` yields features; the template's
    scaffolding (role headers, special tokens, the system prompt by default) is always kept.

    Args:
        messages: ``[{"role": ..., "content": ...}, ...]``.
        tokenizer: a ``transformers`` tokenizer with a chat template.
        level: ``"word"``, ``"sentence"`` or ``"token"``.
        roles: roles whose content is explained.
        add_generation_prompt: passed to ``apply_chat_template``.
        baseline: see :func:`text_features`.
        word_pattern: see :func:`text_features`.
        **template_kwargs: more arguments for ``apply_chat_template``.

    Returns:
        :class:`TextFeatures` of the rendered prompt (its special tokens come from the
        template, so none are added on top).
    """
    if not hasattr(tokenizer, "apply_chat_template"):
        raise TypeError(
            "`tokenizer` must be a transformers tokenizer with `apply_chat_template`; got "
            f"{type(tokenizer).__name__}."
        )
    text, spans = _content_spans(list(messages), tokenizer, add_generation_prompt,
                                 template_kwargs)  # fmt: skip
    for message, span in zip(messages, spans):
        if span is None and message.get("content") and message.get("role") in roles:
            raise ValueError(f"message content {message['content']!r} does not appear in the "
                             "rendered chat template.")  # fmt: skip
    regions = [span for message, span in zip(messages, spans)
               if span is not None and message.get("role") in roles]  # fmt: skip
    if not regions:
        raise ValueError(f"`messages` has no non-empty message with a role in {tuple(roles)}.")
    return text_features(
        text, tokenizer, level, regions=regions, baseline=baseline, add_special_tokens=False,
        word_pattern=word_pattern,
    )
