"""Shared glue of the LLM and layer helpers: decoding a value function, targets, devices."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchspex._pipeline import Problem, check_n_samples
from torchspex.decoders.dispatch import check_method
from torchspex.distributed import resolve_process_group
from torchspex.explain import explain
from torchspex.fourier import canonical_index
from torchspex.interactions import Interactions

__all__ = [
    "check_batch_size",
    "check_budget",
    "check_options",
    "model_device",
    "run_decoder",
    "select_target",
]


def model_device(model: Any) -> torch.device:
    """The device of a model's first parameter (CPU for parameter-free callables)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    if isinstance(model, nn.Module):
        for param in model.parameters():
            return param.device
    return torch.device("cpu")


def check_batch_size(value: Any, name: str = "perturbations_per_eval") -> int:
    """Validates a positive batch size."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        hint = (" 'auto' (halving the batch when a forward pass runs out of memory) is taken "
                "by SpectralInteraction.attribute and LLMSpectralInteraction.attribute; here "
                "the number of masks per call is fixed." if value == "auto" else "")
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.{hint}")
    return value


def check_options(
    method: str, index: str, n_samples: int | None, batch_size: int, process_group: Any
) -> None:
    """Fails on a bad method, index, budget, batch size or process group before any model call.

    (Generating a target or reading a layer's activation comes before :func:`run_decoder`.)
    """
    check_batch_size(batch_size)
    check_method(method)
    canonical_index(index)
    check_n_samples(n_samples)
    resolve_process_group(process_group)


def check_budget(
    n_features: int,
    *,
    method: str,
    index: str,
    n_samples: int | None,
    max_order: int | None,
    generator: torch.Generator | int | None,
    decoder_options: dict[str, Any],
) -> None:
    """Fails before any model call where :func:`run_decoder` would fail before its first
    evaluation: no features, an order outside ``1..n_features``, an index too large to list,
    a budget below the method's minimum for ``n_features``, a bad option of the method.

    For a helper that spends forward passes before the decode (generating a target), so that
    those are not lost to an error the arguments already decide.
    """
    if n_features < 1:
        raise ValueError("there are no features to explain (n_features = 0).")
    problem = Problem.check(
        n_features, method=method, index=index, max_order=max_order, n_samples=n_samples,
        generator=generator, nonfinite="raise", decoder_options=decoder_options,
    )  # fmt: skip
    with warnings.catch_warnings():  # the decode itself warns (e.g. of a default budget)
        warnings.simplefilter("ignore")
        problem.check_budget(n_features)


def select_target(output: Any, target: Any, n_copies: int, batch: int) -> Tensor:
    """Captum's target selection on an output of ``n_copies * batch`` rows (perturbation-major).

    ``None`` keeps the output; an int picks ``output[:, t]``; a tuple ``output[:, *t]``; a list
    or 1-D tensor of length ``batch`` picks one index (int or tuple) per example.
    """
    if not isinstance(output, Tensor):
        raise TypeError(
            "`forward_func` must return a torch.Tensor; got "
            f"{type(output).__name__}. Wrap the model so it returns the value to explain "
            "(e.g. `lambda *x: model(*x).logits`)."
        )
    rows = n_copies * batch
    if output.dim() == 0 or output.shape[0] != rows:
        raise ValueError(
            f"`forward_func` returned shape {tuple(output.shape)} for {rows} input rows; it must "
            "return one row per example (dim 0 = batch)."
        )
    if target is None:
        return output
    try:
        return _pick(output, target, n_copies, batch, rows)
    except IndexError as err:
        raise ValueError(
            f"`target` {target!r} is out of range for the model's output of shape "
            f"{tuple(output.shape[1:])} per example."
        ) from err


def _pick(output: Tensor, target: Any, n_copies: int, batch: int, rows: int) -> Tensor:
    """:func:`select_target`'s pick of a not-None ``target`` (an IndexError where out of
    range)."""
    if isinstance(target, Tensor) and target.numel() == 1 and target.dim() <= 1:
        target = int(target.item())
    if isinstance(target, int) and not isinstance(target, bool):
        return output[:, target]
    if isinstance(target, tuple):
        return output[(slice(None), *target)]
    if isinstance(target, (list, Tensor)):
        per_example = list(target.tolist() if isinstance(target, Tensor) else target)
        if len(per_example) != batch:
            raise ValueError(
                f"`target` as a list or tensor must give one target per example ({batch}); got "
                f"{len(per_example)}."
            )
        picks = [t if isinstance(t, (tuple, list)) else (t,) for t in per_example]
        index = tuple(
            torch.tensor([p[d] for p in picks], device=output.device).repeat(n_copies)
            for d in range(len(picks[0]))
        )
        return output[(torch.arange(rows, device=output.device), *index)]
    raise TypeError(
        "`target` must be None, an int, a tuple, or a list/tensor with one target per example; "
        f"got {type(target).__name__}."
    )


def run_decoder(
    value_function: Callable[[Tensor], Tensor],
    n_features: int,
    *,
    method: str,
    n_samples: int | None,
    max_order: int | None,
    index: str,
    generator: torch.Generator | int | None,
    batch_size: int,
    feature_names: Sequence[str] | None = None,
    feature_ids: Sequence[Hashable] | None = None,
    show_progress: bool = False,
    desc: str = "Spectral Interaction attribution",
    cache: str | os.PathLike | None = None,
    cache_key: Any = None,
    process_group: Any = None,
    **decoder_options: Any,
) -> Interactions:
    """Decodes the spectrum of ``value_function`` (masks -> values) through :func:`explain`.

    The helpers' value functions run the steps of :func:`~torchspex.explain` (see
    ``torchspex/_pipeline.py``); this adds a message for a prompt without features and the
    progress bar's label (the bar is :func:`explain`'s: masks evaluated, one tick per
    ``batch_size`` forward pass). The arguments were checked by :func:`check_options` before
    any model call. ``cache_key`` must identify everything ``value_function`` depends on (model,
    inputs, target, baselines): :func:`explain` adds the feature count, method settings and
    generator state.
    """
    if n_features < 1:
        raise ValueError("there are no features to explain (n_features = 0).")
    return explain(
        value_function, n_features, method=method, n_samples=n_samples, max_order=max_order,
        index=index, generator=generator, feature_names=feature_names,
        feature_ids=feature_ids, batch_size=batch_size, cache=cache, cache_key=cache_key,
        process_group=process_group, show_progress=desc if show_progress else False,
        **decoder_options,
    )  # fmt: skip
