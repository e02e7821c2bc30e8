"""The attribution result: :class:`~torchspex.Interactions` plus Captum-shaped views."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import torch
from torch import Tensor

from torchspex.interactions import Interactions

__all__ = ["AttributionInteractions"]


def captum_caller(depth: int = 1) -> str | None:
    """The Captum function that called, when the frame ``depth`` levels above the caller is
    Captum's, as its public name (``"captum.metrics.infidelity"``); else ``None``.

    Captum code that calls an explanation method (``captum.metrics.sensitivity_max``) or reads
    its result (``captum.metrics.infidelity``) needs attribution tensors; torchspex uses this to
    fail at once, naming the tensor form, instead of after the forward passes. The name is that
    of the outermost of the consecutive Captum frames: the function the user called.
    """

    def is_captum(frame: Any) -> bool:
        module = frame.f_globals.get("__name__", "")
        return bool(module == "captum" or module.startswith("captum."))

    frame = sys._getframe(depth + 1)
    if not is_captum(frame):
        return None
    named = frame
    while frame.f_back is not None and is_captum(frame.f_back):
        frame = frame.f_back
        if not frame.f_globals["__name__"].startswith("captum.log"):  # its usage decorator
            named = frame
    frame = named
    parts = frame.f_globals["__name__"].split(".")
    public = next((i for i, part in enumerate(parts) if part.startswith("_")), len(parts))
    code = frame.f_code
    return ".".join([*parts[:public], getattr(code, "co_qualname", code.co_name)])


def refuse_captum_caller(explainer: str, returns: str, right_form: str) -> None:
    """Raises ``TypeError`` when Captum code calls an explainer's ``attribute`` for tensors.

    Called first thing in ``attribute``: ``sensitivity_max(explainer.attribute, ...)`` would
    otherwise run every forward pass twice before Captum found interactions where it needs
    attribution tensors.

    Args:
        explainer: the explainer's class name; ``returns``: the class ``attribute`` returns;
            ``right_form``: the sentence naming the form to use instead.
    """
    caller = captum_caller(2)
    if caller is not None:
        raise TypeError(
            f"{caller} called `{explainer}.attribute`, which returns interactions ({returns}), "
            f"not the attribution tensors Captum needs. {right_form}"
        )


def captum_method(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the ``__wrapped__`` that Captum's ``NoiseTunnel`` calls.

    Captum's own methods carry it from their usage-logging decorator; ``NoiseTunnel`` calls
    ``attribution_method.attribute.__wrapped__(attribution_method, inputs, **kwargs)``.
    """

    @wraps(func)
    def method(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return method


class AttributionInteractions(Interactions):
    """Interactions learned by :class:`~torchspex.SpectralInteraction` for a batch of inputs.

    The spectrum's coefficients are ``[s, B, *o]``: one column per explained example (``B``, the
    inputs' batch size, always present, as in Captum) and the per-example output shape ``o``
    left by ``target`` (``()`` for one scalar per example). All examples share one support, the
    union of their learned supports; ``select(b)`` gives one example's interactions.

    Besides the :class:`~torchspex.Interactions` views it offers what Captum code expects:
    :meth:`first_order` shaped like the inputs (feeds ``captum.attr.visualization`` and
    ``captum.metrics.infidelity``) and :attr:`convergence_delta`.

    The result is not a tensor: handed to Captum code in place of attributions (e.g.
    ``infidelity(..., attributions=result)``) it raises ``TypeError`` naming
    ``result.first_order("SV")`` before Captum runs the model (Captum's own check would say
    ``AssertionError: inputs must be a torch.Tensor``). Captum's metrics and ``NoiseTunnel``
    take :meth:`SpectralInteraction.as_captum() <torchspex.SpectralInteraction.as_captum>`.

    The input layout lives in ``info["input_layout"]`` so ``save``/``load`` keep it.
    """

    # Captum checks its arguments with isinstance(x, (tuple, Tensor)); for an object of another
    # class Python then reads `x.__class__`, which answers Captum with the right form.
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        caller = captum_caller()
        if caller is not None:
            raise TypeError(
                f"{caller} needs attribution tensors shaped like the inputs; got an "
                'AttributionInteractions (interactions). Pass `result.first_order("SV")` '
                "(Shapley values, Captum's layout), or compute them with "
                "`SpectralInteraction(model).as_captum().attribute(inputs, ...)`."
            )
        return type(self)

    # ------------------------------------------------------------------ facts
    @property
    def batch_size(self) -> int:
        """Number of explained examples ``B``."""
        return self.out_shape[0]

    @property
    def convergence_delta(self) -> Tensor:
        """``float64 [B, *o]``: how far the spectrum is from the model at the two extremes.

        ``(g(all kept) - g(all removed)) - (f(inputs) - f(baselines))`` where ``g`` is the learned
        surrogate and ``f`` the model's values; it equals the sum of the Shapley values minus
        ``f(inputs) - f(baselines)``, Captum's completeness delta. Zero for ``"exhaustive"``.
        """
        return self.info["convergence_delta"]

    @property
    def inputs_value(self) -> Tensor:
        """``float64 [B, *o]``: the model's value on the inputs (every feature kept)."""
        return self.info["inputs_value"]

    @property
    def baselines_value(self) -> Tensor:
        """``float64 [B, *o]``: the model's value with every feature removed (baselines)."""
        return self.info["baselines_value"]

    # ------------------------------------------------------------------ views
    def first_order(  # type: ignore[override]  # Captum's layout: a tuple for tuple inputs
        self, index: str = "SV", return_input_shape: bool = True
    ) -> Tensor | tuple[Tensor, ...]:
        """First-order values in ``index`` (``"SV"`` Shapley, ``"BV"`` Banzhaf, ...).

        Args:
            index: the index whose order-1 terms to read.
            return_input_shape: ``True`` (default) gives Captum's layout: per input a tensor
                ``[B, *o, *input.shape[1:]]`` on the inputs' device and in the input's dtype (a
                floating input's own, e.g. float32; the default float dtype for integer
                inputs) where every position holds its group's value (a tuple for tuple
                inputs); ``False`` gives ``float64 [B, *o, n_features]``, as every other view.
                The spectrum itself stays float64.

        Example:
            >>> import torch
            >>> from torchspex import SpectralInteraction
            >>> explainer = SpectralInteraction(lambda x: x[:, 0] * x[:, 1] + x[:, 2])
            >>> result = explainer.attribute(torch.ones(1, 3), method="exhaustive")
            >>> result.first_order("SV")  # float32, as the inputs
            tensor([[0.5000, 0.5000, 1.0000]])
        """
        dense = super().first_order(index)  # [B, *o, n]
        layout = self.info.get("input_layout")
        if not return_input_shape or layout is None:
            return dense
        flat = dense.reshape(self.batch_size, -1, self.n_features)
        flat = torch.cat([flat, flat.new_zeros(*flat.shape[:2], 1)], dim=2)  # never a feature
        out = []
        dtypes = layout.get("dtypes") or [None] * len(layout["input_shapes"])
        for gmap, shape, dtype in zip(layout["group_maps"], layout["input_shapes"], dtypes):
            pos = gmap.expand(*shape).reshape(self.batch_size, 1, -1)
            pos = pos.expand(-1, flat.shape[1], -1)
            vals = torch.gather(flat, 2, pos)
            vals = vals.reshape(*dense.shape[:-1], *shape[1:])
            out.append(vals.to(layout["device"], attribution_dtype(dtype)))
        return tuple(out) if layout["is_tuple"] else out[0]

    def top_k(
        self, k: int = 10, order: int | None = None, include_empty: bool = False
    ) -> list[tuple[tuple[Any, ...], float | Tensor]]:
        """The ``k`` strongest interactions of a single example (see :meth:`Interactions.top_k`).

        A batch has no single ranking (the strongest pair of one example may be nothing in
        another), so for ``batch_size > 1`` this raises: rank one example with
        ``result.select(i).top_k(k)``, or every one with
        ``[result.select(i).top_k(k) for i in range(result.batch_size)]``.

        Raises:
            ValueError: for a batch of more than one example.
        """
        if self.batch_size > 1:
            raise ValueError(
                f"`top_k` ranks one example; this result holds a batch of {self.batch_size}. "
                f"Rank one with `result.select(i).top_k({k})` (i in 0..{self.batch_size - 1}), "
                f"or each with `[result.select(i).top_k({k}) for i in "
                "range(result.batch_size)]`."
            )
        return self.select(0).top_k(k, order, include_empty)

    def __str__(self) -> str:
        if self.batch_size == 1:
            return str(self.select(0))
        shown = min(self.batch_size, 3)
        lines = [repr(self)]
        for b in range(shown):
            one = str(self.select(b)).splitlines()
            lines.append(f"example {b}:")
            lines.extend(f"  {line}" for line in one[2:7])
        if shown < self.batch_size:
            lines.append(f"... {self.batch_size - shown} more: `result.select(i)` for example i")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"AttributionInteractions(index={self.index!r}, max_order={self.max_order}, "
            f"n_features={self.n_features}, batch_size={self.batch_size}, "
            f"out_shape={self.out_shape[1:]}, n_terms={len(self)}, "
            f"n_evaluations={self.n_evaluations}, method={self.method!r})"
        )


def input_layout(
    group_maps: tuple[Tensor, ...],
    shapes: list[tuple[int, ...]],
    is_tuple: bool,
    device: Any,
    dtypes: list[torch.dtype] | None = None,
) -> dict[str, Any]:
    """The picklable description of how feature groups map onto input positions."""
    layout = {
        "group_maps": [g.cpu() for g in group_maps],
        "input_shapes": [tuple(s) for s in shapes],
        "is_tuple": is_tuple,
        "device": str(device),
    }
    if dtypes is not None:
        layout["dtypes"] = [str(d).replace("torch.", "") for d in dtypes]
    return layout


def attribution_dtype(input_dtype: str | None) -> torch.dtype:
    """The dtype of Captum-shaped attributions for an input of ``input_dtype``.

    A floating input's own dtype (Captum's attributions for a float32 model are float32); an
    integer input (token ids) gives the default float dtype; unknown (an old saved result):
    float64.
    """
    if input_dtype is None:
        return torch.float64
    dtype = getattr(torch, input_dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()
