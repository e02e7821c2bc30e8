"""The model side of the value-function seam: masks in, batched masked forward passes, values out.

:class:`MaskedForward` turns ``inputs``, ``baselines``, a group layout, ``target`` and
``additional_forward_args`` into a value function ``masks bool [m, n] -> float64 [m, B, *o]``.
Masked inputs are built on the inputs' device, ``perturbations_per_eval`` masks per forward
call (or an automatic size that halves on out-of-memory), under ``torch.no_grad()``;
the model is never moved and its mode and ``requires_grad`` flags are left alone.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from torchspex.attr._inputs import TargetType
from torchspex.decoders.base import has_context, mark_context

__all__ = [
    "AUTO_MAX_ELEMENTS",
    "AUTO_MAX_ROWS",
    "BatchBackoff",
    "MaskedForward",
    "check_model_device",
    "check_perturbations_per_eval",
]

#: "auto" batching: at most this many input rows per forward call on the CPU ...
AUTO_MAX_ROWS = 512
#: ... and on an accelerator, where out-of-memory halves it.
AUTO_MAX_ROWS_ACCELERATOR = 8192
#: "auto" batching: at most this many input elements per forward call.
AUTO_MAX_ELEMENTS = 2**26
#: "auto" batching on the CPU with a progress bar: at most this many rows per forward call.
PROGRESS_MAX_ROWS = 128


def check_perturbations_per_eval(value: Any) -> int | str:
    """``perturbations_per_eval`` must be a positive int or ``"auto"``."""
    if value == "auto" and isinstance(value, str):
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`perturbations_per_eval` must be a positive int or 'auto'; got {value!r}."
        )
    return value


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError)


class BatchBackoff:
    """Runs ``n`` items in batches of ``size``; an adaptive size halves on out-of-memory.

    Shared by :class:`MaskedForward` and :class:`~torchspex.llm.LLMSpectralInteraction`. When a
    batch of more than one item raises ``torch.OutOfMemoryError`` (CUDA's
    ``torch.cuda.OutOfMemoryError`` included) and ``adaptive`` is set, the size becomes half that
    batch's, the CUDA cache is emptied once the failed batch's tensors are released, and the
    same items are retried; the smaller size is kept for every later batch (and later
    :meth:`run` calls). Each item's value never depends on its batch, so the result equals a
    run with a small fixed size. Any other error, an out-of-memory error of a one-item batch, or
    any error when not ``adaptive``, goes to ``on_error`` (which may add a note or raise its own
    error) and is then re-raised.

    Args:
        size: items per batch (a positive int).
        adaptive: whether out-of-memory halves ``size`` (``perturbations_per_eval="auto"``).

    Attributes:
        size: the current batch size.
        backoffs: ``[(failed, retried), ...]``: the batch sizes of each halving, in order.
    """

    def __init__(self, size: int, adaptive: bool) -> None:
        self.size = max(1, int(size))
        self.adaptive = adaptive
        self.backoffs: list[tuple[int, int]] = []

    def run(
        self,
        n: int,
        forward: Callable[[int, int], Tensor],
        on_error: Callable[[BaseException, int, int], None] | None = None,
    ) -> list[Tensor]:
        """``[forward(start, stop), ...]`` over consecutive batches covering ``0 .. n - 1``."""
        chunks: list[Tensor] = []
        start = 0
        while start < n:
            stop = min(start + self.size, n)
            retry = False
            try:
                chunks.append(forward(start, stop))
            except Exception as err:
                if not (self.adaptive and _is_oom(err) and stop - start > 1):
                    if on_error is not None:
                        on_error(err, start, stop)
                    raise
                retry = True  # leave the handler first: its traceback holds the batch's tensors
            if retry:
                self.size = max(1, (stop - start) // 2)
                self.backoffs.append((stop - start, self.size))
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start = stop
        return chunks


def _add_note(err: BaseException, note: str) -> None:
    if hasattr(err, "add_note"):  # Python >= 3.11
        err.add_note(note)
    mark_context(err)


def describe_model(forward_func: Any) -> str:
    """``"the model (Linear)"`` for a module or its bound method, else ``"`forward_func` (f)"``."""
    owner = getattr(forward_func, "__self__", None)
    if isinstance(forward_func, torch.nn.Module):
        return f"the model ({type(forward_func).__name__})"
    if isinstance(owner, torch.nn.Module):
        return f"the model ({type(owner).__name__}.{getattr(forward_func, '__name__', 'forward')})"
    name = getattr(forward_func, "__qualname__", None) or type(forward_func).__name__
    return f"`forward_func` ({name})"


def _module_of(forward_func: Any) -> torch.nn.Module | None:
    """The module behind ``forward_func`` (itself or the owner of a bound method), else None."""
    if isinstance(forward_func, torch.nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


def _dispatched(module: torch.nn.Module) -> bool:
    """Whether accelerate's hooks place the tensors (``device_map=...``, CPU / disk offload)."""
    if getattr(module, "hf_device_map", None) is not None:
        return True
    return any(hasattr(m, "_hf_hook") for m in module.modules())


def check_model_device(forward_func: Any, device: torch.device) -> None:
    """Refuses, before any forward pass, a model none of whose tensors is on the inputs' device.

    torchspex builds the masked inputs on the inputs' ``device`` and never moves the model, so
    a model whose parameters and buffers are all elsewhere fails on its first call with torch's
    device error; this says so up front, with both devices and the fix. The policy:

    - only a module, or a bound method of one, is inspected; a plain function, lambda or
      ``functools.partial`` is never refused (its model is out of sight, and it may move the
      inputs itself: passing ``lambda *a: model(*a)`` is the way around this check);
    - a model dispatched by accelerate (``device_map=...``, CPU / disk offload) is skipped: its
      hooks move the tensors to each block's device, and offloaded weights sit on ``meta``;
    - otherwise the model is refused only when *no* parameter or buffer is on ``device``. A
      model split by hand over several devices takes its inputs on its first block's device,
      which holds some of its tensors, while the first *registered* parameter need not be that
      block's (a head or a tied embedding may come first): checking only that one would refuse
      working models. A model without parameters or buffers is never refused.

    Args:
        forward_func: the model or callable given to the explainer.
        device: the inputs' device.

    Raises:
        ValueError: naming the inputs' device, the model's devices and the fix.
    """
    module = _module_of(forward_func)
    if module is None or _dispatched(module):
        return
    found: dict[str, None] = {}  # the model's devices, in order of first appearance
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.device == device:
            return
        found.setdefault(str(tensor.device), None)
    if not found:
        return
    devices = list(found)
    on = repr(str(device))
    real = [d for d in devices if d != "meta"]
    fix = (
        f" Move the inputs to the model (`inputs.to({real[0]!r})`, with `baselines` and tensor "
        f"`additional_forward_args`) or the model to the inputs (`model.to({on})`)."
        if real
        else ""
    )
    if "meta" in found:  # no data to move: `model.to` fails on them
        fix += (
            f" Parameters on 'meta' hold no data, so `model.to({on})` cannot move them: create "
            f"the model with its weights on {on}, or call `model.to_empty(device={on})` and then "
            "`model.load_state_dict(...)`."
        )
    raise ValueError(
        f"{describe_model(forward_func)} has its parameters (and buffers) on "
        f"{', '.join(repr(d) for d in devices)}, but the inputs are on {on}; torchspex runs the "
        f"model on the inputs' device and never moves it.{fix} (A model whose forward moves "
        "its inputs itself can be passed as `lambda *args: model(*args)`, which is not "
        "inspected.)"
    )


_DEVICE_CLASHES = ("same device", "expected device", "device type")


def _device_hint(err: BaseException, device: torch.device) -> str:
    """A note's advice when a forward pass failed on an input/parameter device mismatch."""
    if not isinstance(err, RuntimeError) or not any(k in str(err) for k in _DEVICE_CLASHES):
        return ""
    return (
        f" The inputs are on {str(device)!r}: move the inputs to the model's device "
        f"(`inputs.to(...)`) or the model to theirs (`model.to({str(device)!r})`); torchspex "
        "never moves the model."
    )


_DTYPE_CLASHES = ("must have the same dtype", "expected scalar type", "Input type")


def _dtype_advice(forward_func: Any, inputs: tuple[Tensor, ...], err: BaseException) -> str | None:
    """What to do when the first forward pass failed on an input/parameter dtype mismatch."""
    if not isinstance(err, RuntimeError) or not any(k in str(err) for k in _DTYPE_CLASHES):
        return None
    module = _module_of(forward_func)
    params = (
        {p.dtype for p in module.parameters() if p.is_floating_point()} if module else set()
    )
    floats = sorted({str(x.dtype) for x in inputs if x.is_floating_point()})
    if len(params) == 1 and floats:
        dtype = str(next(iter(params))).replace("torch.", "")
        return (
            f"the inputs are {', '.join(f.replace('torch.', '') for f in floats)} but the model's "
            f"parameters are {dtype} ({err}). Pass inputs of the model's dtype "
            f"(`inputs.to(torch.{dtype})`) or convert the model (e.g. "
            f"`model.to(inputs.dtype)`); torchspex computes in float64 either way."
        )
    return (
        f"the first forward pass failed on a dtype mismatch ({err}); give the inputs (and "
        "`baselines`) the dtype the model expects, or convert the model (`model.to(dtype)`)."
    )


class MaskedForward:
    """Value function over feature groups: ``masks bool [m, n] -> float64 [m, B, *o]`` (CPU).

    Row layout of one forward call with ``k`` masks, ``R`` background rows and ``B`` examples
    is perturbation-major as in Captum: row ``(j * R + r) * B + b`` holds example ``b`` with mask
    ``j`` applied against background row ``r``; tensors in ``additional_forward_args`` are
    repeated ``k * R`` times along dim 0 (0-dim tensors and non-tensors pass unchanged). The
    ``R`` outputs of a mask are averaged in float64.

    Args:
        forward_func: the model; called as ``forward_func(*inputs, *additional_forward_args)``.
        inputs: per input ``[B, *s]``.
        baselines: per input ``[R | 1, B | 1, *s']`` broadcastable to ``[R, B, *s]``.
        group_maps: per input ``int64 [B | 1, *s']``: each position's group in ``0 .. n-1``, or
            ``n`` for a position that is always kept.
        n_features: number of groups ``n``.
        target: a Captum target (validated by :func:`~torchspex.attr._inputs.format_target`).
        additional_forward_args: extra positional arguments after the inputs.
        perturbations_per_eval: masks per forward call, or ``"auto"``.
        progress: an object with ``update(n)`` called after each forward call with its number
            of masks (:class:`~torchspex.decoders.base.Progress`).

    Attributes:
        n_calls: forward calls made.
        n_masks: masks evaluated (over all calls).
        n_rows: input rows sent to the model.
        forward_seconds: wall time spent inside ``forward_func``.
        chunk: the current number of masks per call.
        out_shape: per-example output shape ``o`` after the target (known after the first call).
        value_source: who computes the values (``"the model (MLP)"``), for error messages.

    Raises:
        ValueError: when the model's parameters and buffers are all on another device than the
            inputs (see :func:`check_model_device`).
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        inputs: tuple[Tensor, ...],
        baselines: tuple[Tensor, ...],
        group_maps: tuple[Tensor, ...],
        n_features: int,
        target: TargetType = None,
        additional_forward_args: tuple[Any, ...] = (),
        perturbations_per_eval: int | str = 1,
        progress: Any = None,
    ) -> None:
        check_model_device(forward_func, inputs[0].device)
        self.forward_func = forward_func
        #: who computes the values, for the Evaluator's NaN / inf message
        self.value_source = describe_model(forward_func)
        self.inputs = inputs
        self.baselines = baselines
        self.group_maps = group_maps
        self.n_features = n_features
        self.target = target
        self.additional_forward_args = additional_forward_args
        self.auto = perturbations_per_eval == "auto"
        self.batch = inputs[0].shape[0]
        self.n_background = max(b.shape[0] for b in baselines)
        self.device = inputs[0].device
        rows = self.batch * self.n_background
        if self.auto:
            per_row = max(1, sum(x[0].numel() for x in inputs))
            cap = AUTO_MAX_ROWS if self.device.type == "cpu" else AUTO_MAX_ROWS_ACCELERATOR
            chunk = max(1, min(cap // rows, AUTO_MAX_ELEMENTS // (rows * per_row)))
        else:
            chunk = int(perturbations_per_eval)
        self.batching = BatchBackoff(chunk, adaptive=self.auto)
        self.progress = progress
        self.n_calls = 0
        self.n_masks = 0
        self.n_rows = 0
        self.forward_seconds = 0.0
        self.out_shape: tuple[int, ...] | None = None
        self._target_index: Tensor | tuple[Tensor, ...] | None = None
        self._args_cache: dict[int, tuple[Any, ...]] = {}

    @property
    def chunk(self) -> int:
        """The current number of masks per forward call (halved on out-of-memory with auto)."""
        return self.batching.size

    @chunk.setter
    def chunk(self, value: int) -> None:
        self.batching.size = max(1, int(value))

    def limit_rows_for_progress(self) -> None:
        """With ``"auto"`` on the CPU, at most :data:`PROGRESS_MAX_ROWS` rows per forward call.

        A progress bar moves once per call; 512-row calls of a transformer take seconds each.
        Smaller calls cost little throughput on the CPU; accelerators keep their large calls.
        """
        if self.auto and self.device.type == "cpu":
            rows = self.batch * self.n_background
            self.chunk = max(1, min(self.chunk, PROGRESS_MAX_ROWS // rows))

    # ------------------------------------------------------------------ building blocks
    def masked_inputs(self, masks: Tensor) -> tuple[Tensor, ...]:
        """The model inputs for ``masks bool [k, n]``: per input ``[k * R * B, *s]``."""
        k = masks.shape[0]
        masks = masks.to(self.device)
        masks = torch.cat([masks, masks.new_ones(k, 1)], dim=1)  # column n: always kept
        out = []
        for x, base, gmap in zip(self.inputs, self.baselines, self.group_maps):
            keep = masks[:, gmap].unsqueeze(1)  # [k, 1, G, *s']
            full = torch.where(keep, x, base)  # [k, R | 1, B, *s]
            full = full.expand(k, self.n_background, *x.shape)
            out.append(full.reshape(k * self.n_background * self.batch, *x.shape[1:]))
        return tuple(out)

    def _expanded_args(self, copies: int) -> tuple[Any, ...]:
        args = self._args_cache.get(copies)
        if args is None:
            args = tuple(
                a.repeat(copies, *(1,) * (a.dim() - 1))
                if isinstance(a, Tensor) and a.dim() > 0
                else a
                for a in self.additional_forward_args
            )
            self._args_cache = {copies: args}
        return args

    def _check_output(self, out: Any, rows: int) -> Tensor:
        if not isinstance(out, Tensor):
            raise TypeError(
                f"`forward_func` must return a torch.Tensor; got {type(out).__name__}. Wrap the "
                "model so it returns the tensor to explain (e.g. `lambda *a: model(*a).logits`)."
            )
        if out.dim() == 0 or out.shape[0] != rows:
            raise ValueError(
                f"`forward_func` returned shape {tuple(out.shape)} for a batch of {rows} rows; "
                "its output must have one row per input row (dim 0 grows with the batch). A "
                "model that aggregates the batch into one value cannot be explained per example; "
                "one that only runs at its inputs' own batch size can, with "
                "perturbations_per_eval=1."
            )
        if self.out_shape is None:
            self._prepare_target(tuple(out.shape[1:]))
        return out

    def _prepare_target(self, shape: tuple[int, ...]) -> None:
        """Checks the target against the per-row output shape and precomputes its index."""
        target = self.target

        def check(values: list[int], dim: int, form: str) -> None:
            if dim >= len(shape):
                raise ValueError(
                    f"`target` {form} indexes output dimension {dim + 1}, but the model's "
                    f"output per example has shape {shape}; use target=None or a shorter target."
                )
            size = shape[dim]
            bad = [v for v in values if not -size <= v < size]
            if bad:
                raise ValueError(
                    f"`target` {form} is out of range: {bad[0]} for output dimension {dim + 1} of "
                    f"size {size} (per-example output shape {shape})."
                )

        if target is None:
            self.out_shape = shape
        elif isinstance(target, int):
            check([target], 0, repr(target))
            self.out_shape = shape[1:]
        elif isinstance(target, tuple):
            self._check_tuple_target(target, shape)
            for d, t in enumerate(target):
                check([t], d, repr(target))
            self.out_shape = shape[len(target) :]
        else:
            if isinstance(target, Tensor):
                cols: tuple[Tensor, ...] = (target.to(self.device),)
            elif isinstance(target[0], int):
                cols = (torch.tensor(target, device=self.device),)
            else:
                cols = tuple(torch.tensor(list(c), device=self.device) for c in zip(*target))
            if (isinstance(target, Tensor) or isinstance(target[0], int)) and len(shape) != 1:
                raise ValueError(
                    "`target` with one class per example needs a 2-D model output [batch, "
                    f"classes]; got per-example output shape {shape}."
                )
            for d, c in enumerate(cols):
                check(c.tolist(), d, "(per example)")
            self._target_index = cols
            self.out_shape = shape[len(cols) :]

    def _check_tuple_target(self, target: tuple[int, ...], shape: tuple[int, ...]) -> None:
        """A tuple ``target`` with one entry per example, perhaps meant as per-example targets.

        A tuple is Captum's form for one index into every example's multi-dimensional output
        (``output[:, i, j]``), so it is read that way. When it cannot index the output, the
        error says to pass a list for per-example targets. When it can, with as many entries
        as the output per example has dimensions, both readings are plausible: this warns
        (once per target, Python's default filter) rather than raises, because refusing would
        break valid Captum code whose result is then Captum's, while saying nothing would let
        a misread target through. (In a partition of examples, ``self.batch`` is the
        partition's size, so a tuple of the whole batch's length gets the plain errors.)
        """
        if len(target) < 2 or len(target) != self.batch:
            return
        fits = len(target) <= len(shape) and all(
            -size <= t < size for t, size in zip(target, shape)
        )
        index = ", ".join(str(t) for t in target)
        reading = (
            f"`target` {target!r} is a tuple, which Captum reads as one index into every "
            f"example's output (output[:, {index}])"
        )
        if not fits:
            raise ValueError(
                f"{reading}, but the model's output per example has shape {shape}. For one "
                f"target per example pass a list instead: target={list(target)!r}."
            )
        if len(target) == len(shape):
            warnings.warn(
                f"{reading}; it also has one entry per example. If you meant one target per "
                f"example, pass a list (target={list(target)!r}, or a list of tuples for a "
                "multi-dimensional output).",
                stacklevel=2,
            )

    def _select(self, out: Tensor, copies: int) -> Tensor:
        target = self.target
        if target is None:
            return out
        if isinstance(target, (int, tuple)):
            key = (target,) if isinstance(target, int) else target
            return out[(slice(None), *key)]
        out = out.reshape(copies, self.batch, *out.shape[1:])
        batch = torch.arange(self.batch, device=out.device)
        assert self._target_index is not None and self.out_shape is not None  # _prepare_target
        index = tuple(c.to(out.device) for c in self._target_index)
        return out[(slice(None), batch, *index)].reshape(copies * self.batch, *self.out_shape)

    # ------------------------------------------------------------------ evaluation
    def _forward(self, masks: Tensor) -> Tensor:
        k = masks.shape[0]
        copies = k * self.n_background
        rows = copies * self.batch
        inputs = self.masked_inputs(masks)
        args = self._expanded_args(copies)
        start = time.perf_counter()
        out = self.forward_func(*inputs, *args)
        self.forward_seconds += time.perf_counter() - start
        self.n_calls += 1
        self.n_masks += k
        self.n_rows += rows
        try:
            out = self._check_output(out, rows)
        except Exception as err:  # torchspex's own check: its message says it all
            mark_context(err)
            raise
        values = self._select(out, copies).detach().to(torch.float64)
        values = values.reshape(k, self.n_background, self.batch, *values.shape[1:]).mean(dim=1)
        if self.progress is not None:
            self.progress.update(k)
        return values.cpu()

    def __call__(self, masks: Tensor) -> Tensor:
        """Values for ``masks bool [m, n]``: ``float64 [m, B, *o]`` on the CPU."""
        masks = torch.as_tensor(masks, dtype=torch.bool)

        def on_error(err: BaseException, start: int, stop: int) -> None:
            if has_context(err):
                return
            if self.n_calls == 0:
                advice = _dtype_advice(self.forward_func, self.inputs, err)
                if advice is not None:
                    error = TypeError(f"{describe_model(self.forward_func)}: {advice}")
                    mark_context(error)
                    raise error from err
            rows = (stop - start) * self.n_background * self.batch
            hint = (
                " Lower `perturbations_per_eval` or pass perturbations_per_eval='auto'."
                if _is_oom(err)
                else _device_hint(err, self.device)
            )
            _add_note(
                err,
                f"torchspex: {describe_model(self.forward_func)} raised on forward call "
                f"{self.n_calls + 1} (masks {start}..{stop - 1} of a request of "
                f"{masks.shape[0]}: {rows} input rows); the {self.n_calls} calls before "
                f"it ({self.n_masks} masks) had succeeded.{hint}",
            )

        with torch.no_grad():
            chunks = self.batching.run(
                masks.shape[0], lambda start, stop: self._forward(masks[start:stop]), on_error
            )
        if not chunks:
            return torch.zeros(0, self.batch, *(self.out_shape or ()), dtype=torch.float64)
        return torch.cat(chunks)
