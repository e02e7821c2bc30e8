"""Validation and formatting of Captum-style attribution arguments.

Everything here runs before the first forward pass, so a bad argument costs no model call.
The conventions are Captum's (see ``research/captum-ecosystem.md`` section 1):

- ``inputs``: a tensor or a tuple of tensors, dim 0 the batch ``B`` in every one.
- ``baselines``: ``None`` (zero), a scalar, a tensor broadcastable to the input, or a tuple of
  those per input. A tensor with one *more* dimension than its input is a **background set**
  ``[R, ...]``: ``R`` baselines whose outputs are averaged for every mask (shap-style).
- ``feature_mask``: integer group ids broadcastable to the inputs, global across a tuple, dim 0
  ``1`` (shared) or ``B`` (per example); gaps are allowed and the original ids are kept. A
  negative id marks positions that are never a feature and always keep their input value
  (e.g. a transformer's special tokens); Captum has no way to say this.
- ``target``: every Captum ``TargetType`` form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor

__all__ = [
    "GroupLayout",
    "Partition",
    "format_additional_forward_args",
    "format_baselines",
    "format_feature_mask",
    "format_inputs",
    "format_target",
    "partition_examples",
    "select_examples",
]

#: Captum's ``TargetType``.
TargetType = Union[None, int, tuple, Tensor, list]  # noqa: UP007 (a runtime alias)


def format_inputs(inputs: Any) -> tuple[tuple[Tensor, ...], bool]:
    """``inputs`` as a tuple of tensors sharing dim 0, and whether it was a tuple."""
    is_tuple = isinstance(inputs, tuple)
    tensors = inputs if is_tuple else (inputs,)
    if not tensors:
        raise ValueError("`inputs` must be a tensor or a non-empty tuple of tensors; got ().")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            where = f"`inputs[{i}]`" if is_tuple else "`inputs`"
            raise TypeError(
                f"{where} must be a torch.Tensor; got {type(x).__name__}. Pass a tensor or a "
                "tuple of tensors (dim 0 = batch)."
            )
        if x.dim() == 0:
            raise ValueError(
                "`inputs` must have a batch dimension (dim 0); got a 0-dim tensor. Use "
                "`x.unsqueeze(0)` for a single example."
            )
    batch = tensors[0].shape[0]
    if batch < 1:
        raise ValueError("`inputs` must hold at least one example; got batch size 0.")
    for i, x in enumerate(tensors):
        if x.shape[0] != batch:
            raise ValueError(
                f"every tensor of `inputs` must have the same batch size (dim 0); `inputs[0]` has "
                f"{batch} and `inputs[{i}]` has {x.shape[0]}."
            )
        if x.device != tensors[0].device:
            raise ValueError(
                f"every tensor of `inputs` must be on one device; got {tensors[0].device} and "
                f"{x.device}."
            )
    if sum(x[0].numel() for x in tensors) == 0:
        # an empty tensor beside non-empty ones is allowed (it carries no feature); with every
        # tensor empty there is nothing to explain, and torch's own error would come later
        shapes = ", ".join(str(tuple(x.shape)) for x in tensors)
        what = f"every tensor of `inputs` (shapes {shapes}) is" if is_tuple else (
            f"`inputs` of shape {shapes} is"
        )
        raise ValueError(
            f"{what} empty after the batch dimension (a zero-size dimension), so no example has "
            "a feature to explain. Give each example at least one value, e.g. shape "
            "[B, n_features] with n_features >= 1 (check the slicing or feature selection that "
            "built `inputs`)."
        )
    return tuple(tensors), is_tuple


def _broadcasts(shape: Sequence[int], target: Sequence[int]) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def _one_baseline(base: Any, x: Tensor, where: str) -> Tensor:
    """One input's baseline as ``[R, G, *s]`` (``R`` background rows, ``G`` in ``{1, B}``)."""
    if base is None:
        base = 0
    if isinstance(base, bool):  # a number to Python and to Captum: True is 1, False is 0
        base = int(base)
    if not isinstance(base, (int, float, Tensor)):
        raise TypeError(f"{where} must be None, a number or a tensor; got {type(base).__name__}.")
    if not isinstance(base, Tensor):
        if not x.is_floating_point() and not x.is_complex() and float(base) != int(base):
            raise ValueError(
                f"{where} must be a whole number for an integer input (dtype {x.dtype}); got "
                f"{base}."
            )
        return torch.full((1,) * (x.dim() + 1), base, dtype=x.dtype, device=x.device)
    background = base.dim() == x.dim() + 1
    shape = tuple(base.shape[1:]) if background else tuple(base.shape)
    if not _broadcasts(shape, x.shape):
        kind = "a background set [R, *input_shape]" if background else "a baseline"
        raise ValueError(
            f"{where} of shape {tuple(base.shape)} must broadcast to the input's shape "
            f"{tuple(x.shape)} as {kind}; use the input's shape, dim 0 = 1 to share it across "
            "the batch, or one extra leading dimension for a background set."
        )
    if base.dtype != x.dtype and not x.is_floating_point():
        rounded = base.to(x.dtype)
        if bool((rounded.to(base.dtype) != base).any()):
            raise ValueError(
                f"{where} must hold whole numbers for an integer input (dtype {x.dtype})."
            )
    if background and base.shape[0] < 1:
        raise ValueError(f"{where} is an empty background set (R = 0); give at least one row.")
    base = base.to(device=x.device, dtype=x.dtype)
    if not background:
        base = base.unsqueeze(0)
    # left-pad to [R, *x.shape] rank
    base = base.reshape(base.shape[0], *(1,) * (x.dim() - base.dim() + 1), *base.shape[1:])
    return base


def format_baselines(baselines: Any, inputs: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], int]:
    """Baselines per input as ``[R, G, *s]`` (broadcastable to ``[R, B, *s]``), and ``R``.

    Raises:
        ValueError: when a baseline does not broadcast to its input, the tuple length differs
            from the inputs', or background sets disagree on ``R``.
    """
    if isinstance(baselines, tuple):
        if len(baselines) != len(inputs):
            raise ValueError(
                f"`baselines` must have one entry per input ({len(inputs)}); got {len(baselines)}."
            )
        items = baselines
    else:
        items = (baselines,) * len(inputs)
    many = isinstance(baselines, tuple) and len(inputs) > 1
    out = tuple(
        _one_baseline(b, x, f"`baselines[{i}]`" if many else "`baselines`")
        for i, (b, x) in enumerate(zip(items, inputs))
    )
    sizes = {b.shape[0] for b in out if b.shape[0] != 1}
    if len(sizes) > 1:
        raise ValueError(
            f"background sets in `baselines` must all have the same number of rows; got "
            f"{sorted(sizes)}."
        )
    return out, (sizes.pop() if sizes else 1)


@dataclass(frozen=True)
class GroupLayout:
    """Which feature group every input position belongs to.

    Attributes:
        group_maps: per input, ``int64 [G, *s]`` (``G`` in ``{1, B}``, trailing dims
            broadcastable to the input's) holding each position's index into ``feature_ids``,
            or ``n`` for a position that is never a feature (negative id: always kept).
        feature_ids: ``int64 [n]`` the original feature-mask ids, ascending.
        presence: ``bool [B, n]``: which groups occur in each example.
    """

    group_maps: tuple[Tensor, ...]
    feature_ids: Tensor
    presence: Tensor

    @property
    def n_features(self) -> int:
        """Number of distinct groups across the batch."""
        return int(self.feature_ids.shape[0])


def format_feature_mask(feature_mask: Any, inputs: tuple[Tensor, ...]) -> GroupLayout:
    """Validates ``feature_mask`` and renumbers its ids to ``0 .. n-1`` (mapping kept).

    ``None`` makes every scalar of every input its own feature, numbered consecutively across
    the tuple (Captum's default).

    Raises:
        TypeError: for a mask that is not an integer tensor.
        ValueError: for a mask that does not broadcast to its input or whose dim 0 is neither
            1 nor the batch size.
    """
    batch = inputs[0].shape[0]
    if feature_mask is None:
        maps, start = [], 0
        for x in inputs:
            size = x[0].numel()
            maps.append(torch.arange(start, start + size, device=x.device).reshape(1, *x.shape[1:]))
            start += size
        presence = torch.ones(batch, start, dtype=torch.bool)
        return GroupLayout(tuple(maps), torch.arange(start), presence)
    many = isinstance(feature_mask, tuple)
    masks = feature_mask if many else (feature_mask,)
    if len(masks) != len(inputs):
        raise ValueError(
            f"`feature_mask` must have one tensor per input ({len(inputs)}); got {len(masks)}."
        )
    shaped = []
    for i, (m, x) in enumerate(zip(masks, inputs)):
        where = f"`feature_mask[{i}]`" if many else "`feature_mask`"
        if not isinstance(m, Tensor):
            raise TypeError(f"{where} must be an integer torch.Tensor; got {type(m).__name__}.")
        if m.dtype == torch.bool or m.is_floating_point() or m.is_complex():
            raise TypeError(
                f"{where} must hold integer group ids (e.g. dtype torch.long); got dtype "
                f"{m.dtype}. Convert it with `.long()`."
            )
        if not _broadcasts(m.shape, x.shape):
            raise ValueError(
                f"{where} of shape {tuple(m.shape)} must broadcast to the input's shape "
                f"{tuple(x.shape)} (dim 0 = 1 for one mask shared by the batch, or {batch} for "
                "one mask per example)."
            )
        m = m.reshape(*(1,) * (x.dim() - m.dim()), *m.shape).long()
        shaped.append(m)
    ids = torch.unique(torch.cat([m.reshape(-1).cpu() for m in shaped]))
    ids = ids[ids >= 0]
    n = ids.shape[0]
    if n == 0:
        raise ValueError(
            "`feature_mask` has no feature: every id is negative (never a feature). Give the "
            "positions to explain ids >= 0."
        )
    presence = torch.zeros(batch, n + 1, dtype=torch.bool)
    maps = []
    for m, x in zip(shaped, inputs):
        flat = m.cpu().reshape(m.shape[0], -1)
        local = torch.where(flat < 0, n, torch.searchsorted(ids, flat))
        hit = torch.zeros(m.shape[0], n + 1, dtype=torch.bool)
        presence |= hit.scatter_(1, local, True)
        maps.append(local.reshape(m.shape).to(x.device))
    return GroupLayout(tuple(maps), ids, presence[:, :n])


def format_target(target: Any, batch: int) -> TargetType:
    """Checks the form of a Captum ``target`` (ranges are checked on the first forward).

    Returns the target with a 1-element tensor turned into an ``int`` and a per-example tensor
    into ``int64``.
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("`target` must be an int, a tuple, a list or a tensor; got bool.")
    if isinstance(target, int):
        return target
    if isinstance(target, tuple):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise TypeError(f"`target` as a tuple must hold ints; got {target!r}.")
        return target
    if isinstance(target, Tensor):
        if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
            raise TypeError(f"`target` as a tensor must hold integers; got dtype {target.dtype}.")
        if target.numel() == 1:
            return int(target.item())
        if target.dim() != 1 or target.shape[0] != batch:
            raise ValueError(
                f"`target` as a tensor must have one entry per example, shape ({batch},); got "
                f"shape {tuple(target.shape)}."
            )
        return target.long()
    if isinstance(target, list):
        if len(target) != batch:
            raise ValueError(
                f"`target` as a list must have one entry per example ({batch}); got {len(target)}."
            )
        if all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            return list(target)
        if all(isinstance(t, tuple) for t in target):
            lengths = {len(t) for t in target}
            if len(lengths) != 1 or not all(isinstance(v, int) for t in target for v in t):
                raise ValueError(
                    "`target` as a list of tuples must hold int tuples of one length; got "
                    f"{target!r}."
                )
            return list(target)
        raise TypeError(f"`target` as a list must hold ints or int tuples; got {target!r}.")
    raise TypeError(
        f"`target` must be None, an int, a tuple, a list or a tensor; got {type(target).__name__}."
    )


def format_additional_forward_args(args: Any, batch: int | None = None) -> tuple[Any, ...]:
    """Captum's rule: ``None`` is no argument, a non-tuple is one positional argument.

    With ``batch``, every tensor of dim >= 1 must have dim 0 = ``batch`` (it is repeated with
    the perturbations, one copy per mask), and lists / dicts may not hold tensors (they pass
    unchanged, so their rows would not line up with the perturbed inputs).

    Raises:
        ValueError: for a tensor whose dim 0 is not the batch size.
        TypeError: for a list, dict or set holding tensors.
    """
    if args is None:
        return ()
    out = args if isinstance(args, tuple) else (args,)
    if batch is None:
        return out
    for i, arg in enumerate(out):
        where = f"`additional_forward_args[{i}]`" if isinstance(args, tuple) else (
            "`additional_forward_args`"
        )
        if isinstance(arg, Tensor) and arg.dim() > 0 and arg.shape[0] != batch:
            raise ValueError(
                f"{where} has shape {tuple(arg.shape)}: a tensor argument must have dim 0 = the "
                f"batch size ({batch}), one row per example, because it is repeated with the "
                "perturbations. Pass a 0-dim tensor or a plain value for a constant, or bind a "
                "shared tensor into the model (e.g. `functools.partial(model, mask=t)`)."
            )
        items = arg.values() if isinstance(arg, dict) else arg
        if isinstance(arg, (list, dict, set)) and any(isinstance(v, Tensor) for v in items):
            raise TypeError(
                f"{where} is a {type(arg).__name__} holding tensors; it would be passed "
                "unchanged, not repeated with the perturbations. Pass the tensors themselves as "
                "entries of a tuple: `additional_forward_args=(t1, t2)`."
            )
    return out


@dataclass(frozen=True)
class Partition:
    """Examples that share one set of groups, so they share every masked forward pass.

    Attributes:
        members: ``int64 [B_p]`` the examples (ascending).
        columns: ``int64 [n_p]`` their groups, as indices into the layout's ``feature_ids``.
    """

    members: Tensor
    columns: Tensor

    @property
    def n_features(self) -> int:
        """Number of groups ``n_p`` the partition's examples hold."""
        return int(self.columns.shape[0])


def partition_examples(presence: Tensor) -> list[Partition]:
    """Groups the examples by the set of feature groups they contain (largest set first)."""
    rows, inverse = torch.unique(presence, dim=0, return_inverse=True)
    parts = [
        Partition(torch.nonzero(inverse == p).squeeze(1), torch.nonzero(rows[p]).squeeze(1))
        for p in range(rows.shape[0])
    ]
    return sorted(parts, key=lambda p: (-p.columns.shape[0], int(p.members[0])))


def select_examples(value: Any, members: Tensor, batch: int) -> Any:
    """``value`` restricted to ``members`` when its dim 0 is the batch (Captum's Lime rule).

    Tensors and lists of length ``batch`` are indexed; anything else is passed unchanged.
    """
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch:
        return value[members.to(value.device)]
    if isinstance(value, list) and len(value) == batch:
        return [value[i] for i in members.tolist()]
    return value
