"""Shared glue of the LLM and layer helpers: decoding a value function, targets, devices."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchspex.decoders.base import Evaluator
from torchspex.decoders.dispatch import check_method, decode
from torchspex.explain import check_generator, check_n_samples
from torchspex.fourier import canonical_index
from torchspex.interactions import Interactions, _check_order

__all__ = ["check_batch_size", "model_device", "run_decoder", "select_target"]


def model_device(model: Any) -> torch.device:
    """The device of a model's first parameter (CPU for parameter-free callables)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    if isinstance(model, nn.Module):
        for param in model.parameters():
            return param.device
    return torch.device("cpu")


def check_batch_size(value: int, name: str = "perturbations_per_eval") -> int:
    """Validates a positive batch size."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    return value


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


def _with_progress(
    value_function: Callable[[Tensor], Tensor], total: int | None, desc: str
) -> tuple[Callable[[Tensor], Tensor], Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="mask", mininterval=0.5)

    def wrapped(masks: Tensor) -> Tensor:
        out = value_function(masks)
        bar.update(int(masks.shape[0]))
        return out

    return wrapped, bar


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
    **decoder_options: Any,
) -> Interactions:
    """Validates everything, then decodes the spectrum of ``value_function`` (masks -> values)."""
    if n_features < 1:
        raise ValueError("there are no features to explain (n_features = 0).")
    method = check_method(method)
    index = canonical_index(index)
    max_order = _check_order(max_order, n_features)
    n_samples = check_n_samples(n_samples)
    generator = check_generator(generator)
    batch_size = check_batch_size(batch_size)
    bar = None
    if show_progress:
        total = n_samples if n_samples is not None else (
            1 << n_features if method == "exhaustive" else None
        )
        value_function, bar = _with_progress(value_function, total, desc)
    evaluator = Evaluator(value_function, n_features, n_samples=n_samples, batch_size=batch_size)
    try:
        spectrum, info = decode(
            method, evaluator, n_features, n_samples=n_samples, max_order=max_order,
            generator=generator, **decoder_options,
        )
    finally:
        if bar is not None:
            bar.close()
    return Interactions(
        spectrum.prune(atol=0.0),
        index=index,
        max_order=max_order,
        n_evaluations=evaluator.n_evaluations,
        feature_names=feature_names,
        feature_ids=feature_ids,
        method=method,
        info=info,
    )
