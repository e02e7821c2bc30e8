"""``LLMSpectralInteraction``: interactions between prompt words for a target's log-probability.

The value of a mask is the log-probability (or probability) of the target tokens given the
prompt with the removed features replaced or deleted. Masks are evaluated in padded batches:
the prompts are left-padded, the target is appended, and explicit position ids
(``cumsum(attention_mask) - 1``) make every row equal to its own unpadded forward pass, so a
result never depends on which masks share a batch. Row 0 of the values is the whole target's
log-probability, rows ``1..T`` each target token's (Captum's ``LLMAttribution`` layout).

Memory: each forward pass returns logits for the ``T`` positions that predict the target only
(``logits_to_keep``), the log-softmax runs there, and only ``[b, 1 + T]`` values outlive the
pass. ``perturbations_per_eval="auto"`` (the default) sizes the batch from the prompt's length
(:data:`AUTO_TOKENS_PER_BATCH`, measured there) and halves it on out-of-memory
(:class:`~torchspex.attr._forward.BatchBackoff`, shared with ``SpectralInteraction``).
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchspex.attr._forward import BatchBackoff, check_perturbations_per_eval
from torchspex.cache import fingerprint
from torchspex.grouping.text import TextFeatures, text_features
from torchspex.interactions import Interactions
from torchspex.llm._common import (
    check_budget,
    check_options,
    model_device,
    run_decoder,
)
from torchspex.llm.layer import LayerSweep, _named_layers, sweep_layers

__all__ = [
    "AUTO_MAX_LOGITS",
    "AUTO_MAX_PROMPTS",
    "AUTO_TOKENS_PER_BATCH",
    "DEFAULT_GEN_ARGS",
    "LLMInteractions",
    "LLMSpectralInteraction",
]

#: Greedy generation used when ``target=None`` (Captum's defaults).
DEFAULT_GEN_ARGS: dict[str, Any] = {"max_new_tokens": 25, "do_sample": False}
_ATTR_TARGETS = ("log_prob", "prob")

#: ``perturbations_per_eval="auto"``: at most this many tokens (padded prompt + target) per
#: forward pass: 8 prompts of 1,000 tokens, 27 of 300. Measured peak CPU memory of one forward
#: pass (`_target_log_probs`, fp32, one thread, random GPT-2 from a ``GPT2Config`` with GPT-2's
#: vocabulary of 50,257, 5 target tokens; peak RSS over the RSS before the call, one process
#: per row, torch 2.13, transformers 5.25):
#:
#: ====================================  ======  =========  =========
#: model                                 tokens  1 prompt   8 prompts
#: ====================================  ======  =========  =========
#: 2 layers, 64 dims, logits_to_keep        300    16 MiB     44 MiB
#: 2 layers, 64 dims, logits_to_keep      1,000    23 MiB     62 MiB
#: 2 layers, 64 dims, all logits            300    71 MiB    510 MiB
#: 2 layers, 64 dims, all logits          1,000   208 MiB  1,587 MiB
#: 12 layers, 768 dims (GPT-2 small)        300   <147 MiB   354 MiB
#: 12 layers, 768 dims (GPT-2 small)      1,000   154 MiB    625 MiB
#: ====================================  ======  =========  =========
#:
#: So 8,192 tokens cost about 0.6 GiB of activations for a GPT-2-small-sized model (about
#: 80 KiB per token, growing with width and depth: a few GiB for a 4,096-wide model), small
#: next to the weights of any model it is run on; where it does not fit, out-of-memory halves
#: the batch. (The former fixed default, 16 prompts, would take about twice that at 1,000
#: tokens, scaling the 8-prompt row.)
AUTO_TOKENS_PER_BATCH = 8192
#: ... at most this many masked prompts per forward pass (short prompts) ...
AUTO_MAX_PROMPTS = 64
#: ... and at most this many logit elements ``[b, positions, vocab]`` per forward pass (1 GiB
#: in float32). It binds for a model without ``logits_to_keep``, which returns logits at every
#: position: in the table above those dominate (1,587 MiB for 8 prompts of 1,000 tokens), and
#: this rule gives 5 prompts there (about 1 GiB).
AUTO_MAX_LOGITS = 2**28


class LLMInteractions(Interactions):
    """:class:`~torchspex.Interactions` of an LLM target, with its tokens.

    Outputs are ``(1 + T,)``: index 0 is the whole target, ``1 + t`` target token ``t``.

    Attributes:
        output_tokens: the target tokens as strings.
        target_ids: ``int64 [T]`` target token ids.
        inp: the explained input (``TextFeatures`` or a Captum ``InterpretableInput``).
        attr_target: ``"log_prob"`` or ``"prob"``.
    """

    output_tokens: list[str]
    target_ids: Tensor
    inp: Any
    attr_target: str

    @classmethod
    def _wrap(cls, base: Interactions, **extras: Any) -> LLMInteractions:
        out = cls.__new__(cls)
        out.__dict__.update(base.__dict__)
        out.__dict__.update(extras)
        return out

    def _extras(self) -> dict[str, Any]:
        keys = ("output_tokens", "target_ids", "inp", "attr_target")
        return {k: self.__dict__[k] for k in keys}

    def to_index(self, index: str, max_order: int | None = None) -> LLMInteractions:
        """The same spectrum in another index (no new model calls)."""
        return self._wrap(super().to_index(index, max_order), **self._extras())

    @property
    def input_tokens(self) -> list[str]:
        """Labels of the features (Captum's name)."""
        return self.feature_names

    @property
    def sequence(self) -> Interactions:
        """Interactions of the whole target's value."""
        return self.select(0)

    def token(self, position: int) -> Interactions:
        """Interactions of target token ``position``'s value."""
        n_tokens = len(self.output_tokens)
        if not -n_tokens <= position < n_tokens:
            raise IndexError(f"`position` must be in [-{n_tokens}, {n_tokens}); got {position}.")
        return self.select(1 + position % n_tokens)

    def to_captum(self, index: str = "SV") -> Any:
        """Captum's ``LLMAttributionResult`` with first-order values of ``index``.

        ``seq_attr`` is the whole target's and ``token_attr`` each token's first-order values,
        so Captum's ``plot_seq_attr`` / ``plot_token_attr`` work unchanged. Interactions of
        higher order are not representable there; keep this object for them.
        """
        from captum.attr import InterpretableInput, LLMAttributionResult

        values = self.first_order(index).float()
        full = torch.as_tensor(self.full_value, dtype=torch.float64)[1:]
        probs = full.exp() if self.attr_target == "log_prob" else full
        return LLMAttributionResult(
            input_tokens=list(self.feature_names),
            output_tokens=list(self.output_tokens),
            seq_attr=values[0],
            token_attr=values[1:],
            output_probs=probs.float(),
            inp=self.inp if isinstance(self.inp, InterpretableInput) else None,
        )


class LLMSpectralInteraction:
    """Interactions between the words / sentences / spans of a prompt for an LLM's target.

    Args:
        model: a causal language model (``transformers``-style: called with ``input_ids``,
            ``attention_mask`` and, when it accepts them, ``position_ids``; returns ``logits``
            ``[B, L, V]``). It is never moved or switched to eval mode.
        tokenizer: its tokenizer (a fast ``transformers`` tokenizer).
        attr_target: ``"log_prob"`` or ``"prob"`` of the target.

    Example:
        See ``tests/llm/test_llm.py`` and the tutorial; a typical call is
        ``LLMSpectralInteraction(model, tok).attribute("The capital of France is",
        target=" Paris", method="exhaustive")``.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, attr_target: str = "log_prob") -> None:
        if not callable(model):
            raise TypeError(f"`model` must be a callable nn.Module; got {type(model).__name__}.")
        if attr_target not in _ATTR_TARGETS:
            raise ValueError(f"`attr_target` must be one of {_ATTR_TARGETS}; got {attr_target!r}.")
        self.model = model
        self.tokenizer = tokenizer
        self.attr_target = attr_target

    # ------------------------------------------------------------------ inputs
    def _features(self, inp: Any, level: str, baseline: str | int) -> Any:
        if isinstance(inp, str):
            return text_features(inp, self.tokenizer, level, baseline=baseline)
        if isinstance(inp, TextFeatures):
            return inp
        if hasattr(inp, "n_itp_features") and hasattr(inp, "to_model_input"):
            return inp
        raise TypeError(
            "`inp` must be a str, a TextFeatures (torchspex.grouping.text_features) or a Captum "
            f"InterpretableInput (TextTokenInput, TextTemplateInput); got {type(inp).__name__}."
        )

    def _pad_id(self) -> int:
        for name in ("pad_token_id", "eos_token_id"):
            value = getattr(self.tokenizer, name, None)
            if isinstance(value, int):
                return value
        return 0

    def _as_ids(self, model_input: Any) -> tuple[Tensor, Tensor]:
        """(ids [k, L], attention [k, L]) from what ``to_model_input`` returned."""
        if isinstance(model_input, str):
            ids = torch.tensor([self.tokenizer.encode(model_input)], dtype=torch.long)
            return ids, torch.ones_like(ids)
        if isinstance(model_input, Mapping):
            ids = torch.as_tensor(model_input["input_ids"]).long()
            attention = model_input.get("attention_mask")
            ids = ids.unsqueeze(0) if ids.dim() == 1 else ids
            if attention is None:
                return ids, torch.ones_like(ids)
            attention = torch.as_tensor(attention).long()
            return ids, attention.unsqueeze(0) if attention.dim() == 1 else attention
        if isinstance(model_input, Tensor):
            ids = model_input.long()
            ids = ids.unsqueeze(0) if ids.dim() == 1 else ids
            return ids, torch.ones_like(ids)
        raise TypeError(
            "`inp.to_model_input` must return a str, token ids or a mapping with input_ids; got "
            f"{type(model_input).__name__}."
        )

    def _left_pad(self, rows: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        width = max(ids.shape[1] for ids, _ in rows)
        ids_out = torch.full((len(rows), width), self._pad_id(), dtype=torch.long)
        att_out = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, att) in enumerate(rows):
            ids_out[i, width - ids.shape[1] :] = ids[0]
            att_out[i, width - ids.shape[1] :] = att[0]
        return ids_out, att_out

    def prompt_batch(self, inp: Any, masks: Tensor) -> tuple[Tensor, Tensor]:
        """Left-padded prompts for feature masks: ``(input_ids, attention_mask)`` ``[m, P]``."""
        from captum.attr import TextTokenInput

        masks = torch.as_tensor(masks).bool()
        if isinstance(inp, TextFeatures):
            batch = inp.masked_inputs(masks, padding_side="left")
            return batch["input_ids"], batch["attention_mask"]
        if isinstance(inp, TextTokenInput):
            ids = inp.to_model_input(masks.long()).long()
            return ids, torch.ones_like(ids)
        rows = [self._as_ids(inp.to_model_input(row.unsqueeze(0).float())) for row in masks]
        return self._left_pad(rows)

    def _unperturbed(self, inp: Any) -> tuple[Tensor, Tensor]:
        if isinstance(inp, TextFeatures):
            ids = inp.input_ids.unsqueeze(0)
            return ids, torch.ones_like(ids)
        return self._as_ids(inp.to_model_input())

    # ------------------------------------------------------------------ targets
    def target_ids(self, inp: Any, target: Any = None, gen_args: dict | None = None) -> Tensor:
        """Target token ids ``int64 [T]``: encoded string, given ids, or greedy generation."""
        if target is None:
            generate = getattr(self.model, "generate", None)
            if not callable(generate):
                raise ValueError(
                    "`target` must be given for a model without `generate`; pass the target text."
                )
            ids, attention = self._unperturbed(inp)
            device = model_device(self.model)
            args = {**DEFAULT_GEN_ARGS, "pad_token_id": self._pad_id(), **(gen_args or {})}
            with torch.no_grad():
                out = generate(
                    input_ids=ids.to(device), attention_mask=attention.to(device), **args
                )
            tokens = out[0, ids.shape[1] :].cpu().long()
        elif gen_args is not None:
            raise ValueError("`gen_args` must be None when `target` is given.")
        elif isinstance(target, str):
            tokens = torch.tensor(
                self.tokenizer.encode(target, add_special_tokens=False), dtype=torch.long
            )
        elif isinstance(target, (Tensor, list, tuple)):
            raw = torch.as_tensor(target)
            if raw.is_floating_point() or raw.is_complex() or raw.dtype == torch.bool:
                raise TypeError(
                    f"`target` as token ids must be integers; got dtype {raw.dtype}."
                )
            tokens = raw.long().reshape(-1).cpu()
        else:
            raise TypeError(
                f"`target` must be a str, token ids or None; got {type(target).__name__}."
            )
        if tokens.numel() == 0:
            raise ValueError("`target` must have at least one token; got an empty target.")
        vocab = self._vocab_size()
        if int(tokens.min()) < 0 or (vocab is not None and int(tokens.max()) >= vocab):
            bad = tokens[(tokens < 0) | (tokens >= vocab)] if vocab is not None else (
                tokens[tokens < 0])  # fmt: skip
            allowed = ">= 0" if vocab is None else f"in 0..{vocab - 1} (the model's vocabulary)"
            raise ValueError(f"`target` token ids must be {allowed}; got {bad[:5].tolist()}.")
        return tokens

    # ------------------------------------------------------------------ forward
    def _accepts(self, name: str) -> bool:
        forward = getattr(self.model, "forward", self.model)
        try:
            return name in inspect.signature(forward).parameters
        except (TypeError, ValueError):
            return False

    def _target_log_probs(self, ids: Tensor, attention: Tensor, target: Tensor) -> Tensor:
        """``float64 [b, 1 + T]``: sum and per-token log-probs of ``target`` after each prompt.

        The model reads the prompt and the first ``T - 1`` target tokens (the last target
        token's own logits are never needed); with ``logits_to_keep`` it returns logits at the
        ``T`` positions that predict the target only, ``[b, T, V]``, else ``[b, P + T - 1, V]``
        of which those ``T`` are sliced. The log-softmax runs over the vocabulary at those ``T``
        positions of this batch, and only the ``[b, T]`` picked log-probs leave it: no
        ``[m, n_tokens, vocab]`` tensor outlives a forward pass.
        """
        device = model_device(self.model)
        ids, attention, target = ids.to(device), attention.to(device), target.to(device)
        if _has_empty_prompt(attention):
            raise ValueError(_EMPTY_PROMPT)
        b, width = ids.shape
        n_target = target.numel()
        full = torch.cat([ids, target[:-1].expand(b, n_target - 1)], dim=1)
        att = torch.cat([attention, torch.ones_like(full[:, width:])], dim=1)
        kwargs: dict[str, Any] = {"input_ids": full, "attention_mask": att}
        if self._accepts("position_ids"):
            kwargs["position_ids"] = (att.cumsum(dim=1) - 1).clamp_min(0)
        elif bool((att == 0).any()):
            warnings.warn(
                "the model takes no `position_ids`, so padded rows see shifted positions and "
                "results may depend on the batch; use perturbations_per_eval=1 to avoid padding.",
                stacklevel=3,
            )
        if self._accepts("use_cache"):
            kwargs["use_cache"] = False
        if self._accepts("logits_to_keep"):
            kwargs["logits_to_keep"] = n_target  # the last T positions predict the target
        with torch.no_grad():
            out = self.model(**kwargs)
            logits = _logits(out, b, n_target, int(target.max()))
            logits = logits[:, -n_target:]  # [b, T, V] (a view)
            del out
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            del logits
            index = target.view(1, -1, 1).expand(b, n_target, 1)
            picked = log_probs.gather(-1, index).squeeze(-1).double().cpu()
        return torch.cat([picked.sum(dim=1, keepdim=True), picked], dim=1)

    def _vocab_size(self) -> int | None:
        size = getattr(getattr(self.model, "config", None), "vocab_size", None)
        if isinstance(size, int):
            return size
        try:
            return len(self.tokenizer)
        except TypeError:
            return None

    def auto_batch_size(self, n_tokens: int, n_target: int) -> int:
        """Masked prompts per forward pass for ``perturbations_per_eval="auto"``.

        ``min(AUTO_MAX_PROMPTS, AUTO_TOKENS_PER_BATCH // n_tokens, AUTO_MAX_LOGITS //
        (positions * vocab))``, at least 1, where ``n_tokens`` is the longest masked prompt
        plus the target, ``positions`` is ``n_target`` for a model taking ``logits_to_keep``
        (``transformers`` models do) and ``n_tokens`` otherwise (it returns logits for every
        position), and ``vocab`` the model's ``config.vocab_size`` (else the tokenizer's
        length). At 1,000 tokens this is 8 prompts per pass; at 100, 64. See
        :data:`AUTO_TOKENS_PER_BATCH` for the measurement behind the constants; an
        out-of-memory error still halves the size.

        Args:
            n_tokens: tokens of the longest masked prompt with its target.
            n_target: target tokens ``T``.
        """
        rows = min(AUTO_MAX_PROMPTS, AUTO_TOKENS_PER_BATCH // max(1, n_tokens))
        vocab = self._vocab_size()
        if vocab:
            positions = n_target if self._accepts("logits_to_keep") else n_tokens
            rows = min(rows, AUTO_MAX_LOGITS // max(1, positions * vocab))
        return max(1, rows)

    def _auto_size(self, inp: Any, target: Tensor) -> int:
        """:meth:`auto_batch_size` for ``inp``: its longest of all-kept and all-removed prompts."""
        n = int(inp.n_itp_features)
        probes = torch.stack([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
        ids, _ = self.prompt_batch(inp, probes)
        return self.auto_batch_size(int(ids.shape[1]) + target.numel(), target.numel())

    def _values(self, inp: Any, masks: Tensor, target: Tensor, batching: BatchBackoff) -> Tensor:
        """:meth:`values` in ``batching``'s batches (halved on out-of-memory if adaptive)."""
        masks = torch.as_tensor(masks).bool()

        def forward(start: int, stop: int) -> Tensor:
            ids, attention = self.prompt_batch(inp, masks[start:stop])
            return self._target_log_probs(ids, attention, target)

        def on_error(err: BaseException, start: int, stop: int) -> None:
            if not isinstance(err, torch.OutOfMemoryError) or not hasattr(err, "add_note"):
                return
            if stop - start > 1:
                fix = (
                    f"lower `perturbations_per_eval` (this batch had {stop - start} masked "
                    "prompts) or pass perturbations_per_eval='auto', which halves the batch on "
                    "out-of-memory."
                )
            else:
                fix = (
                    "a single masked prompt (with the target) does not fit in memory. Run the "
                    "model in half precision (`torch_dtype=torch.bfloat16`), dispatch it over "
                    "several devices or offload it (`device_map='auto'`), use a device with "
                    "more memory, or shorten the prompt or the target."
                )
            err.add_note(f"torchspex: LLMSpectralInteraction ran out of memory: {fix}")

        chunks = batching.run(masks.shape[0], forward, on_error)
        out = torch.cat(chunks) if chunks else torch.zeros(0, 1 + target.numel())
        return out.exp() if self.attr_target == "prob" else out

    def values(
        self, inp: Any, masks: Tensor, target: Tensor, perturbations_per_eval: int | str = "auto"
    ) -> Tensor:
        """The explained value for each mask: ``float64 [m, 1 + T]`` (log-prob or prob).

        ``perturbations_per_eval``: masked prompts per forward pass, or ``"auto"``
        (:meth:`auto_batch_size`, halved on out-of-memory).
        """
        check_perturbations_per_eval(perturbations_per_eval)
        auto = perturbations_per_eval == "auto"
        size = self._auto_size(inp, target) if auto else int(perturbations_per_eval)
        return self._values(inp, masks, target, BatchBackoff(size, adaptive=auto))

    def _check_length(self, feats: Any, n_target: int) -> None:
        """Fails where the unmasked prompt and ``n_target`` target tokens (the forward reads
        the prompt and the first ``n_target - 1``) exceed the model's learned positions
        (``config.n_positions`` / ``max_position_embeddings``); only warns for rotary position
        embeddings, which have no hard limit."""
        config = getattr(self.model, "config", None)
        limit = getattr(config, "n_positions", None) or getattr(
            config, "max_position_embeddings", None
        )
        if not isinstance(limit, int) or isinstance(limit, bool):
            return
        ids, _ = self._unperturbed(feats)
        length = int(ids.shape[1]) + n_target - 1
        if length <= limit:
            return
        what = (f"the prompt ({int(ids.shape[1])} tokens) and the target ({n_target}) need "
                f"{length} positions; the model has {limit}")  # fmt: skip
        if _rotary(config):
            warnings.warn(f"{what}: results beyond its trained length may be unreliable.",
                          stacklevel=4)  # fmt: skip
            return
        raise ValueError(f"{what}. Shorten the prompt or the target.")

    def _checked_target(
        self, feats: Any, target: Any, gen_args: dict | None, *, empty_prompts: bool,
        method: str, index: str, n_samples: int | None, max_order: int | None, generator: Any,
        decoder_options: dict[str, Any],
    ) -> Tensor:  # fmt: skip
        """The target ids, after every check the arguments decide: a given target is read
        first (no forward pass), then :meth:`_checks_before_calls`, then a target is generated
        (forward passes) where none is given, and the prompt with the target must fit the model."""
        given = None if target is None else self._target(feats, target, gen_args)
        self._checks_before_calls(
            feats, empty_prompts=empty_prompts, method=method, index=index, n_samples=n_samples,
            max_order=max_order, generator=generator, decoder_options=decoder_options,
        )  # fmt: skip
        target_ids = self._target(feats, None, gen_args) if given is None else given
        self._check_length(feats, target_ids.numel())
        return target_ids

    def _checks_before_calls(
        self, feats: Any, *, empty_prompts: bool, method: str, index: str,
        n_samples: int | None, max_order: int | None, generator: Any,
        decoder_options: dict[str, Any],
    ) -> None:  # fmt: skip
        """What the arguments already decide, before a forward pass (generating a target
        costs some): the decoder's budget and options, an empty masked prompt
        (``empty_prompts``: every token removed), a prompt longer than the model."""
        n = int(feats.n_itp_features)
        check_budget(n, method=method, index=index, n_samples=n_samples, max_order=max_order,
                     generator=generator, decoder_options=decoder_options)  # fmt: skip
        if empty_prompts:
            _, attention = self.prompt_batch(feats, torch.zeros(1, n, dtype=torch.bool))
            if _has_empty_prompt(attention):
                raise ValueError(_EMPTY_PROMPT)
        self._check_length(feats, 1)

    def _target(self, feats: Any, target: Any, gen_args: dict | None) -> Tensor:
        """The target ids of an explanation, after a warning if the model is in training mode.

        Comes after every argument check: a generated target costs forward passes.
        """
        if getattr(self.model, "training", False):
            warnings.warn(
                "the model is in training mode: dropout makes every value random. Call "
                "model.eval() first.",
                stacklevel=4,
            )
        return self.target_ids(feats, target, gen_args)

    # ------------------------------------------------------------------ attribution
    def attribute(
        self,
        inp: Any,
        target: str | Tensor | Sequence[int] | None = None,
        gen_args: dict[str, Any] | None = None,
        *,
        level: str = "word",
        baseline: str | int = "remove",
        method: str = "auto",
        n_samples: int | None = None,
        max_order: int | None = None,
        index: str = "k-SII",
        perturbations_per_eval: int | str = "auto",
        generator: torch.Generator | int | None = None,
        show_progress: bool = False,
        cache: str | os.PathLike | None = None,
        process_group: Any = None,
        **decoder_options: Any,
    ) -> LLMInteractions:
        """Learns the interactions between prompt features for the target's (log-)probability.

        Args:
            inp: the prompt: a str (grouped at ``level`` with ``baseline``), a
                :class:`~torchspex.grouping.TextFeatures` (e.g. from ``chat_features``), or a
                Captum ``TextTokenInput`` / ``TextTemplateInput``.
            target: the target text, its token ids ``[T]``, or ``None`` to generate it greedily
                from the unperturbed prompt.
            gen_args: generation arguments when ``target`` is None (default
                ``{"max_new_tokens": 25, "do_sample": False}``).
            level: ``"word"``, ``"sentence"`` or ``"token"`` when ``inp`` is a str.
            baseline: ``"remove"``, ``"mask"``, ``"pad"``, ``"unk"``, a token or token id when
                ``inp`` is a str.
            method: ``"auto"`` (default: the regression on the index's design below 400
                features, SPEX's hybrid above; see :func:`torchspex.explain`), ``"spex"``,
                ``"regression"``, ``"proxyspex"`` or ``"exhaustive"`` (all ``2^n`` masks, exact).
            n_samples: the most masks (model evaluations) to spend.
            max_order: order cap of the interactions.
            index: interaction index of the result (default ``"k-SII"``, of the Shapley family:
                its design serves ``first_order("SV")``); see :func:`torchspex.explain`.
            perturbations_per_eval: masked prompts per padded forward pass, or ``"auto"``
                (default): :meth:`auto_batch_size` from the prompt's length (8 prompts of
                1,000 tokens, up to 64 short ones), halved and retried whenever a forward
                pass runs out of memory (``torch.OutOfMemoryError``), the smaller size kept.
                Values never depend on the batch, so the result equals a small fixed batch's.
                ``info["perturbations_per_eval"]`` is the final size and
                ``info["batch_backoffs"]`` lists each halving as ``[failed, retried]``. A fixed
                int never changes: out-of-memory is re-raised with a note naming the fix.
            generator: ``torch.Generator`` or int seed (``None``: seed 0).
            show_progress: show a progress bar over evaluated masks.
            cache: path of an evaluation store (SQLite, see :mod:`torchspex.cache`): every
                forward batch's values are appended as it completes, so a run killed part-way
                resumes with only the missing forward passes when called again with the same
                arguments. Values are keyed by a fingerprint of the model's class and weights,
                the tokenizer (class, name, vocabulary size, pad id), the masked prompts' token
                ids (prompt, grouping and baseline), the target token ids, ``attr_target``, the
                method settings and the generator state: a changed prompt or target never
                reuses stored values. A generated target (``target=None``) is generated again.
            process_group: share the forward passes among the ranks of a
                ``torch.distributed`` process group: ``None`` (default) means the default group
                whenever torch.distributed is initialized (e.g. under ``torchrun``), ``False``
                never. Every rank calls ``attribute`` with the same arguments and generator
                seed (its model on its own device) and returns the same result. See
                :mod:`torchspex.distributed`.
            **decoder_options: method-specific settings.

        Returns:
            :class:`LLMInteractions` with outputs ``(1 + T,)``.
        """
        feats = self._features(inp, level, baseline)
        fixed = check_perturbations_per_eval(perturbations_per_eval)
        auto = fixed == "auto"
        check_options(method, index, n_samples, 1 if auto else int(fixed), process_group)
        target_ids = self._checked_target(
            feats, target, gen_args, empty_prompts=True, method=method, index=index,
            n_samples=n_samples, max_order=max_order, generator=generator,
            decoder_options=decoder_options,
        )  # fmt: skip
        size = self._auto_size(feats, target_ids) if auto else int(fixed)
        batching = BatchBackoff(size, adaptive=auto)

        def value_function(masks: Tensor) -> Tensor:
            # the evaluator hands over `size` masks at a time, now and then with one more (a
            # stored value re-checked on resume, a distributed witness mask): one forward pass
            # each for a fixed size; "auto" splits them by its current (perhaps halved) size
            if batching.adaptive:
                return self._values(feats, masks, target_ids, batching)
            return self._values(
                feats, masks, target_ids, BatchBackoff(int(masks.shape[0]), adaptive=False)
            )

        key = None if cache is None else self._prompt_key(feats, target_ids)
        result = run_decoder(
            value_function, int(feats.n_itp_features), method=method, n_samples=n_samples,
            max_order=max_order, index=index, generator=generator,
            batch_size=size, feature_names=list(feats.values),
            show_progress=show_progress, desc="LLM Spectral Interaction attribution",
            cache=cache, cache_key=key, process_group=process_group, **decoder_options,
        )  # fmt: skip
        result.info["perturbations_per_eval"] = batching.size
        result.info["batch_backoffs"] = [list(pair) for pair in batching.backoffs]
        return LLMInteractions._wrap(result, **self._extras(feats, target_ids))

    def _model_key(self) -> str:
        """Fingerprint of what turns token ids into values: model weights, tokenizer, target."""
        tok = self.tokenizer
        try:
            size = len(tok)
        except TypeError:
            size = None
        tokenizer = (
            type(tok).__qualname__, getattr(tok, "name_or_path", None), size,
            getattr(tok, "vocab_size", None), self._pad_id(),
        )  # fmt: skip
        return fingerprint(self.model, tokenizer, self.attr_target)

    def _prompt_key(self, feats: Any, target_ids: Tensor) -> str:
        """Fingerprint of one prompt explanation's values (see ``cache`` in :meth:`attribute`).

        The prompt enters as the token ids of probe masks: all kept, all removed, each feature
        removed alone and each kept alone, which pins down the grouping and the baseline.
        """
        n = int(feats.n_itp_features)
        eye = torch.eye(n, dtype=torch.bool)
        kept = torch.ones(1, n, dtype=torch.bool)
        probes = torch.cat([kept, ~kept, ~eye, eye])
        ids, attention = self.prompt_batch(feats, probes)
        return fingerprint(
            "LLMSpectralInteraction.attribute", self._model_key(), type(feats).__qualname__,
            list(feats.values), ids, attention, target_ids,
        )  # fmt: skip

    def _extras(self, feats: Any, target_ids: Tensor) -> dict[str, Any]:
        decode = getattr(self.tokenizer, "decode", None)
        tokens = [decode([t]) if decode else str(t) for t in target_ids.tolist()]
        return {
            "output_tokens": tokens, "target_ids": target_ids, "inp": feats,
            "attr_target": self.attr_target,
        }

    def attribute_layers(
        self,
        inp: Any,
        target: str | Tensor | Sequence[int] | None = None,
        gen_args: dict[str, Any] | None = None,
        layers: Any = None,
        layer_baselines: float | Tensor | None = None,
        *,
        level: str = "word",
        method: str = "auto",
        n_samples: int | None = None,
        max_order: int | None = None,
        index: str = "k-SII",
        perturbations_per_eval: int = 16,
        generator: torch.Generator | int | None = None,
        show_progress: bool = False,
        cache: str | os.PathLike | None = None,
        process_group: Any = None,
        **decoder_options: Any,
    ) -> LayerSweep:
        """Per-layer interactions: the prompt features are masked in each block's output.

        At layer ``l``, the hidden states of a removed feature's tokens (output of block
        ``l``) are replaced by ``layer_baselines`` (default 0); the target's (log-)probability
        is read as in :meth:`attribute`. Every layer uses the same masks.

        Args:
            inp: a str, :class:`~torchspex.grouping.TextFeatures` or Captum ``TextTokenInput``
                (features must map to token positions).
            target: see :meth:`attribute`.
            gen_args: see :meth:`attribute`.
            layers: the blocks to sweep (default: ``transformer_blocks(model)``), as modules
                (named by their qualified names in the model, e.g. ``"transformer.h.1"``) or
                ``(name, module)`` pairs.
            layer_baselines: scalar or tensor broadcastable to ``[1, L, hidden]``.
            level: see :meth:`attribute`.
            method: see :meth:`attribute`.
            n_samples: see :meth:`attribute`.
            max_order: see :meth:`attribute`.
            index: see :meth:`attribute`.
            perturbations_per_eval: masks per forward call (default 16), an int: the sweep
                masks hidden states inside the forward pass and has no out-of-memory back-off,
                so ``"auto"`` is refused here.
            generator: see :meth:`attribute`.
            show_progress: see :meth:`attribute`.
            cache: see :meth:`attribute`; each layer's values are stored under their own
                fingerprint (also covering the layer, its name and ``layer_baselines``).
            process_group: see :meth:`attribute`.
            **decoder_options: see :meth:`attribute`.

        Returns:
            :class:`~torchspex.llm.LayerSweep` of :class:`LLMInteractions`, one per layer.
        """
        feats = self._features(inp, level, "remove")
        check_options(method, index, n_samples, perturbations_per_eval, process_group)
        groups = _token_groups(feats)
        target_ids = self._checked_target(
            feats, target, gen_args, empty_prompts=False, method=method, index=index,
            n_samples=n_samples, max_order=max_order, generator=generator,
            decoder_options=decoder_options,
        )  # fmt: skip
        prompt, _ = self._unperturbed(feats)
        # the forward reads the prompt and the first T - 1 target tokens (see _target_log_probs)
        layer_mask = torch.cat([groups, torch.full((target_ids.numel() - 1,), -1)]).view(1, -1, 1)
        named = _named_layers(self.model if layers is None else layers, self.model)

        def forward(ids: Tensor) -> Tensor:
            out = self._target_log_probs(ids, torch.ones_like(ids), target_ids)
            return out.exp() if self.attr_target == "prob" else out

        sweep = sweep_layers(
            forward, named, prompt.to(model_device(self.model)), generator=generator,
            layer_baselines=layer_baselines, layer_mask=layer_mask.to(model_device(self.model)),
            method=method, n_samples=n_samples, max_order=max_order, index=index,
            perturbations_per_eval=perturbations_per_eval, show_progress=show_progress,
            feature_names=list(feats.values), cache=cache, process_group=process_group,
            cache_key=None if cache is None else self._model_key(), **decoder_options,
        )  # fmt: skip
        extras = self._extras(feats, target_ids)
        results: list[Interactions] = [
            LLMInteractions._wrap(res.select(0), **extras) for res in sweep.results
        ]
        return LayerSweep(sweep.layer_names, results)


def _has_empty_prompt(attention: Tensor) -> bool:
    """Whether a row of a left-padded prompt batch has no token (its last position is padding,
    or the batch has no positions at all)."""
    return attention.shape[1] == 0 or bool((attention[:, -1] == 0).any())


_EMPTY_PROMPT = (
    "a masked prompt is empty (every token removed), so the first target token has no context. "
    "Keep a token outside the features (e.g. a BOS token or a fixed prefix) or use a token "
    "baseline ('mask', 'pad', 'unk', or a token id)."
)


def _rotary(config: Any) -> bool:
    """Whether a transformers config describes rotary position embeddings (no hard length)."""
    to_dict = getattr(config, "to_dict", None)
    keys = to_dict() if callable(to_dict) else vars(config)
    return any("rope" in key or "rotary" in key for key in keys)


def _logits(out: Any, batch: int, n_target: int, top_id: int) -> Tensor:
    """The next-token logits ``[batch, positions, vocab]`` in a causal LM's output, checked.

    Raises:
        TypeError: for an output without logits.
        ValueError: for logits of another shape, too few positions or too small a vocabulary.
    """
    if hasattr(out, "logits"):
        logits = out.logits
    elif isinstance(out, Mapping):
        logits = out.get("logits")
    else:
        logits = out[0] if isinstance(out, tuple) and out else out
    if not isinstance(logits, Tensor):
        raise TypeError(
            "the model must return next-token logits (a tensor, a tuple starting with one, or "
            f"an output with `.logits` / a 'logits' key); got {type(out).__name__}."
        )
    if logits.dim() == 4:
        logits = logits[:, 0]
    if logits.dim() != 3 or logits.shape[0] != batch or logits.shape[1] < n_target:
        raise ValueError(
            f"the model returned logits of shape {tuple(logits.shape)} for {batch} prompts; "
            f"expected [batch={batch}, positions >= {n_target}, vocabulary] (a causal language "
            "model's logits at every position)."
        )
    if top_id >= logits.shape[-1]:
        raise ValueError(
            f"the target token id {top_id} is outside the model's logits ({logits.shape[-1]} "
            "entries): the tokenizer and the model do not share a vocabulary."
        )
    return logits


def _token_groups(feats: Any) -> Tensor:
    """``int64 [L]``: each prompt token's feature (``-1``: never masked) for a layer sweep.

    Raises:
        TypeError: for an input whose features are not token positions.
    """
    from captum.attr import TextTokenInput

    if isinstance(feats, TextFeatures):
        return feats.token_features
    if not isinstance(feats, TextTokenInput):
        raise TypeError(
            "`inp` must map features to token positions for a layer sweep: pass a str, "
            f"TextFeatures or TextTokenInput; got {type(feats).__name__}."
        )
    groups = torch.full((feats.inp_tensor.shape[1],), -1, dtype=torch.long)
    kept = (
        torch.arange(groups.numel()) if feats.itp_mask is None
        else torch.nonzero(feats.itp_mask[0]).squeeze(1)
    )  # fmt: skip
    groups[kept] = torch.arange(kept.numel())
    return groups
