"""Interactions between groups of a layer's activation: ``LayerSpectralInteraction`` and sweeps.

The layer's activation (output, or input with ``attribute_to_layer_input=True``) is computed
once; each mask then replaces the removed groups by ``layer_baselines`` inside a forward hook
while the whole model re-runs on the (repeated) inputs, as Captum's ``LayerFeatureAblation``
does. Hooks are registered ``with_kwargs=True`` and touch only the hidden-state tensor (the
first output, or the first positional / ``hidden_states`` input): every other argument and
output (caches, attention masks, ``None``) passes through unchanged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from captum.attr import LayerAttribution
from torch import Tensor, nn

from torchspex.attr._forward import check_model_device
from torchspex.attr._inputs import format_additional_forward_args
from torchspex.attr.result import attribution_dtype, captum_method, refuse_captum_caller
from torchspex.cache import fingerprint
from torchspex.fourier import canonical_index
from torchspex.interactions import Interactions
from torchspex.llm._common import (
    check_options,
    run_decoder,
    select_target,
)

__all__ = [
    "LayerFirstOrderAttribution",
    "LayerSpectralInteraction",
    "LayerSweep",
    "sweep_layers",
    "transformer_blocks",
]


# ---------------------------------------------------------------------- hook plumbing
def _input_slot(args: tuple, kwargs: dict) -> tuple[str, Any]:
    if args and isinstance(args[0], Tensor):
        return "arg", 0
    if isinstance(kwargs.get("hidden_states"), Tensor):
        return "kw", "hidden_states"
    for key, value in kwargs.items():
        if isinstance(value, Tensor):
            return "kw", key
    raise TypeError("the layer was called without any tensor input; nothing to attribute to.")


def _get_input(args: tuple, kwargs: dict) -> Tensor:
    kind, key = _input_slot(args, kwargs)
    return args[key] if kind == "arg" else kwargs[key]


def _set_input(args: tuple, kwargs: dict, value: Tensor) -> tuple[tuple, dict]:
    kind, key = _input_slot(args, kwargs)
    if kind == "arg":
        return (value, *args[1:]), kwargs
    return args, {**kwargs, key: value}


def _get_output(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    if isinstance(output, Mapping):
        for value in output.values():
            if isinstance(value, Tensor):
                return value
    raise TypeError(
        f"the layer returned {type(output).__name__} without a leading tensor; "
        "attribute to a sub-module that returns the hidden states."
    )


def _set_output(output: Any, value: Tensor) -> Any:
    if isinstance(output, Tensor):
        return value
    if isinstance(output, list):
        return [value, *output[1:]]
    if type(output) is tuple:
        return (value, *output[1:])
    if isinstance(output, tuple):  # named tuple
        return type(output)(value, *output[1:])
    new = copy.copy(output)
    key = next(k for k, v in output.items() if isinstance(v, Tensor))
    new[key] = value
    return new


def _register(layer: nn.Module, to_input: bool, fn: Callable[[Tensor], Tensor | None]) -> Any:
    """Hook that shows ``fn`` the layer's tensor and substitutes what it returns (if not None)."""
    if to_input:

        def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
            new = fn(_get_input(args, kwargs))
            return None if new is None else _set_input(args, kwargs, new)

        return layer.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        new = fn(_get_output(output))
        return None if new is None else _set_output(output, new)

    return layer.register_forward_hook(hook, with_kwargs=True)


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (value,)


def _broadcasts(shape: torch.Size, other: torch.Size) -> bool:
    """Whether two shapes broadcast together."""
    try:
        torch.broadcast_shapes(shape, other)
    except RuntimeError:
        return False
    return True


def _repeat(values: tuple, n_copies: int) -> tuple:
    """Repeats every tensor with a batch dim ``n_copies`` times along dim 0 (Captum's layout)."""
    if n_copies == 1:
        return values
    return tuple(
        torch.cat([v] * n_copies) if isinstance(v, Tensor) and v.dim() > 0 else v for v in values
    )


# ---------------------------------------------------------------------- the explainer
class LayerSpectralInteraction:
    """Interactions between groups of a layer's activation (e.g. token positions).

    Args:
        forward_func: the model or any callable ``(*inputs, *additional_forward_args) ->
            Tensor [B, ...]``.
        layer: the module whose output (or input) is masked.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Flatten(0))
        >>> x = torch.tensor([[[1.0], [2.0], [3.0]]])           # [B=1, positions=3, 1]
        >>> f = lambda x: model(x).prod().reshape(1)             # product of the positions
        >>> result = LayerSpectralInteraction(f, model[0]).attribute(
        ...     x, layer_baselines=1.0, method="exhaustive", index="Moebius")
        >>> round(float(result[(1, 2)]), 6)  # (2 - 1) * (3 - 1)
        2.0
    """

    def __init__(self, forward_func: Callable[..., Any], layer: nn.Module) -> None:
        if not callable(forward_func):
            raise TypeError(f"`forward_func` must be callable; got {type(forward_func).__name__}.")
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module; got {type(layer).__name__}.")
        self.forward_func = forward_func
        self.layer = layer

    def _activation(self, inputs: tuple, args: tuple, to_input: bool) -> Tensor:
        captured: list[Tensor] = []

        def grab(t: Tensor) -> None:
            captured.append(t.detach())

        handle = _register(self.layer, to_input, grab)
        try:
            with torch.no_grad():
                self.forward_func(*inputs, *args)
        finally:
            handle.remove()
        if not captured:
            raise ValueError("`layer` was not called by `forward_func`; pick a layer it uses.")
        if len(captured) > 1:
            # every call would get the first call's masked activation in its place
            raise ValueError(
                f"`layer` runs {len(captured)} times in one forward pass (a module applied more "
                "than once); its activation is not one tensor to mask. Pick a module that runs "
                "once (e.g. wrap each use in its own module)."
            )
        return captured[0]

    @staticmethod
    def _mask_ids(layer_mask: Tensor) -> tuple[Tensor, list[int]]:
        """``layer_mask`` as a tensor and its sorted group ids ``>= 0`` (no forward pass)."""
        mask = torch.as_tensor(layer_mask)
        if mask.is_floating_point() or mask.dtype == torch.bool:
            raise TypeError(f"`layer_mask` must hold integer group ids; got dtype {mask.dtype}.")
        ids = torch.unique(mask[mask >= 0])
        if ids.numel() == 0:
            raise ValueError("`layer_mask` has no group id >= 0; there is nothing to mask.")
        return mask, ids.tolist()

    @staticmethod
    def _groups(layer_mask: Tensor | None, act: Tensor) -> tuple[Tensor, list[int]]:
        if layer_mask is None:
            if act.dim() < 2:
                raise ValueError(
                    f"the layer's activation has shape {tuple(act.shape)}; pass `layer_mask` "
                    "to say which elements form each feature."
                )
            ids = torch.arange(act.shape[1], device=act.device)
            return ids.reshape(1, -1, *([1] * (act.dim() - 2))), list(range(act.shape[1]))
        mask, id_list = LayerSpectralInteraction._mask_ids(layer_mask)
        mask = mask.to(act.device)
        if mask.dim() != act.dim() or not _broadcasts(mask.shape, act.shape):
            raise ValueError(
                f"`layer_mask` of shape {tuple(mask.shape)} must have the layer activation's "
                f"number of dimensions and broadcast to its shape {tuple(act.shape)}."
            )
        ids = torch.tensor(id_list, dtype=torch.long, device=act.device)
        dense = torch.searchsorted(ids, mask.long())
        return torch.where(mask >= 0, dense, -1), id_list

    def _layer_name(self) -> str | None:
        """The layer's qualified name inside ``forward_func`` (when that is a module)."""
        func = self.forward_func
        root = func if isinstance(func, nn.Module) else getattr(func, "__self__", None)
        if not isinstance(root, nn.Module):
            return None
        return next((name for name, m in root.named_modules() if m is self.layer), None)

    def attribute(
        self,
        inputs: Tensor | tuple[Any, ...],
        layer_baselines: float | Tensor | None = None,
        target: Any = None,
        additional_forward_args: Any = None,
        layer_mask: Tensor | None = None,
        attribute_to_layer_input: bool = False,
        *,
        method: str = "auto",
        n_samples: int | None = None,
        max_order: int | None = None,
        index: str = "k-SII",
        perturbations_per_eval: int = 1,
        generator: torch.Generator | int | None = None,
        show_progress: bool = False,
        feature_names: Sequence[str] | None = None,
        cache: str | os.PathLike | None = None,
        cache_key: Any = None,
        process_group: Any = None,
        **decoder_options: Any,
    ) -> Interactions:
        """Learns the interactions between groups of the layer's activation.

        Args:
            inputs: tensor or tuple of tensors (dim 0 = batch ``B``) passed to
                ``forward_func``.
            layer_baselines: what a removed group becomes: a scalar (default 0) or a tensor
                broadcastable to the activation (e.g. its mean over a dataset).
            target: Captum's target selection applied to the forward's output.
            additional_forward_args: more positional arguments after ``inputs``; tensors are
                repeated along dim 0 when masks are batched, others passed through.
            layer_mask: integer group ids with the activation's number of dimensions,
                broadcastable to it; ids ``< 0`` are never masked. Default: one group per
                index of dim 1 (token positions for ``[B, L, D]``).
            attribute_to_layer_input: mask the layer's input instead of its output.
            method: ``"auto"`` (default: the regression on the index's design below 400
                features, SPEX's hybrid above; see :func:`torchspex.explain`), ``"spex"``,
                ``"regression"``, ``"proxyspex"`` or ``"exhaustive"`` (all ``2^n`` masks, exact).
            n_samples: the most masks to evaluate.
            max_order: order cap of the interactions.
            index: interaction index of the result (default ``"k-SII"``, of the Shapley family:
                its design serves ``first_order("SV")``); see :func:`torchspex.explain`.
            perturbations_per_eval: masks per forward call (each is ``B`` rows), an int: the
                masked activations are built by a hook inside one forward pass, which has no
                out-of-memory back-off, so ``"auto"`` (as :class:`SpectralInteraction` and
                :class:`LLMSpectralInteraction` take it) is refused here.
            generator: ``torch.Generator`` or int seed (``None``: seed 0).
            show_progress: show a progress bar over evaluated masks.
            feature_names: labels of the groups (default: their ids).
            cache: path of an evaluation store (SQLite, see :mod:`torchspex.cache`): every
                forward batch's values are appended as it completes; calling again with the
                same arguments makes only the forward passes still missing. With ``layer_mask``
                given, a call whose values are all stored makes one forward pass only, which
                evaluates one stored mask again to catch a changed model (the layer's
                activation is read lazily). Values are keyed by a fingerprint of
                ``forward_func`` (a module's class and weights; a function's code and the
                modules, tensors and plain values its closure captured), the layer (its weights
                and name in ``forward_func``), ``inputs``, ``layer_baselines``, ``target``,
                ``additional_forward_args``, ``layer_mask``, ``attribute_to_layer_input``,
                ``cache_key``, the method settings and the generator state.
            cache_key: anything else that identifies what ``forward_func`` computes (e.g. a
                model version when ``forward_func`` reaches its model through an object the
                fingerprint cannot see), mixed into the fingerprint.
            process_group: share the forward passes among the ranks of a
                ``torch.distributed`` process group: ``None`` (default) means the default group
                whenever torch.distributed is initialized (e.g. under ``torchrun``), ``False``
                never. Every rank calls ``attribute`` with the same arguments and generator
                seed and returns the same result. See :mod:`torchspex.distributed`.
            **decoder_options: method-specific settings.

        Returns:
            :class:`~torchspex.Interactions` whose outputs are ``(B, *target output)``;
            ``result.select(b)`` gives example ``b``. Feature ids are the ``layer_mask`` ids.
        """
        refuse_captum_caller("LayerSpectralInteraction", "Interactions", _RIGHT_FORM)
        inputs_t, args, batch = _layer_inputs(inputs, additional_forward_args)
        check_options(method, index, n_samples, perturbations_per_eval, process_group)
        first = next((x for x in inputs_t if isinstance(x, Tensor)), None)
        if first is not None:  # before the forward pass that reads the layer's activation
            check_model_device(self.forward_func, first.device)
        values = _LayerValues(
            self, inputs_t, args, target, batch, layer_mask, layer_baselines,
            bool(attribute_to_layer_input),
        )  # fmt: skip
        ids = values.group_ids()
        key = None
        if cache is not None:
            key = fingerprint(
                "LayerSpectralInteraction", self.forward_func, self.layer, self._layer_name(),
                inputs_t, args, target, layer_mask, layer_baselines, values.to_input, cache_key,
            )  # fmt: skip
        names = [str(i) for i in ids] if feature_names is None else list(feature_names)
        return run_decoder(
            values.evaluate, len(ids), method=method, n_samples=n_samples,
            max_order=max_order, index=index, generator=generator,
            batch_size=perturbations_per_eval, feature_names=names, feature_ids=ids,
            show_progress=show_progress, desc="Layer Spectral Interaction attribution",
            cache=cache, cache_key=key, process_group=process_group, **decoder_options,
        )  # fmt: skip

    def as_captum(self, index: str = "SV") -> LayerFirstOrderAttribution:
        """This explainer as a Captum layer attribution method returning Captum's tensors.

        The form for Captum's wrappers such as ``NoiseTunnel``: ``as_captum().attribute(inputs,
        ...)`` takes :meth:`attribute`'s arguments and returns
        ``attribute(...).first_order(index)`` shaped like the layer's activation, every element
        holding its group's value, as Captum's ``LayerFeatureAblation`` does. Captum's metrics
        (``infidelity``, ``sensitivity_max``) need input-shaped attributions, so as with
        Captum's own layer methods they do not apply.

        Args:
            index: the first-order values to return (``"SV"``: Shapley values); also the
                ``index`` of the underlying :meth:`attribute` calls.

        Returns:
            :class:`LayerFirstOrderAttribution`, a ``captum.attr.LayerAttribution``.

        Raises:
            ValueError: for an unknown index.

        Example:
            >>> from captum.attr import NoiseTunnel
            >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
            ...                             torch.nn.Linear(4, 1), torch.nn.Flatten(0))
            >>> shapley = LayerSpectralInteraction(model, model[1]).as_captum()
            >>> x = torch.randn(2, 3)
            >>> shapley.attribute(x, method="exhaustive").shape   # the activation's shape
            torch.Size([2, 4])
            >>> NoiseTunnel(shapley).attribute(x, nt_samples=3, method="exhaustive").shape
            torch.Size([2, 4])
        """
        return LayerFirstOrderAttribution(self, index)

    def __getattr__(self, name: str) -> Any:
        if name in ("has_convergence_delta", "multiplies_by_inputs", "attribute_future"):
            raise AttributeError(
                f"LayerSpectralInteraction has no `{name}`: it is not a Captum attribution "
                f"method (its `attribute` returns interactions). {_RIGHT_FORM}"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_RIGHT_FORM = (
    "Captum's wrappers take `explainer.as_captum()` (first-order Shapley values shaped like the "
    "layer's activation, as Captum's layer methods), e.g. `NoiseTunnel(explainer.as_captum())`. "
    "Captum's metrics take no layer attributions (Captum's LayerFeatureAblation fails there too)."
)


class LayerFirstOrderAttribution(LayerAttribution):
    """A :class:`LayerSpectralInteraction` as a Captum layer attribution method.

    Made by :meth:`LayerSpectralInteraction.as_captum`; its ``attribute`` returns first-order
    values shaped like the layer's activation (as Captum's ``LayerFeatureAblation``), for
    Captum's wrappers such as ``captum.attr.NoiseTunnel``.

    Args:
        explainer: the explainer whose :meth:`~LayerSpectralInteraction.attribute` runs.
        index: the first-order values returned (``"SV"``: Shapley values).
    """

    def __init__(self, explainer: LayerSpectralInteraction, index: str = "SV") -> None:
        if not isinstance(explainer, LayerSpectralInteraction):
            raise TypeError(
                "`explainer` must be a LayerSpectralInteraction; got "
                f"{type(explainer).__name__}."
            )
        super().__init__(explainer.forward_func, explainer.layer)
        self.explainer = explainer
        self.index = canonical_index(index)

    def attribute_future(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported (as in Captum's layer methods)."""
        raise NotImplementedError(
            "attribute_future is not implemented for LayerSpectralInteraction."
        )

    @captum_method
    def attribute(
        self,
        inputs: Tensor | tuple[Any, ...],
        layer_baselines: float | Tensor | None = None,
        target: Any = None,
        additional_forward_args: Any = None,
        layer_mask: Tensor | None = None,
        attribute_to_layer_input: bool = False,
        **kwargs: Any,
    ) -> Tensor:
        """First-order values of :meth:`LayerSpectralInteraction.attribute`, Captum's layout.

        Args:
            inputs, layer_baselines, target, additional_forward_args, layer_mask,
                attribute_to_layer_input: as in :meth:`LayerSpectralInteraction.attribute`.
            **kwargs: its keyword settings (``method``, ``n_samples``, ``generator``, ...);
                not ``index``, set by ``as_captum``.

        Returns:
            ``[B, *o, *activation.shape[1:]]`` in the activation's dtype and device: every
            element holds its group's value, 0 for elements outside every group. Reading the
            activation's shape takes one forward pass of the inputs besides the explanation's.

        Raises:
            TypeError: for ``index`` (choose it with ``as_captum(index=...)``) or
                ``return_convergence_delta`` (no delta, as Captum's ``LayerFeatureAblation``);
                otherwise as :meth:`LayerSpectralInteraction.attribute`.
        """
        if "index" in kwargs:
            raise TypeError(
                "`index` is set by `as_captum(index=...)`; this attribution method returns "
                f"{self.index!r} values. Use `explainer.as_captum({kwargs['index']!r})`."
            )
        if kwargs.pop("return_convergence_delta", False):
            raise TypeError(
                "LayerSpectralInteraction has no convergence delta (as Captum's "
                "LayerFeatureAblation); drop `return_convergence_delta`."
            )
        explainer = self.explainer
        result = explainer.attribute(
            inputs, layer_baselines, target, additional_forward_args, layer_mask,
            attribute_to_layer_input, index=self.index, **kwargs,
        )  # fmt: skip
        inputs_t, args, _ = _layer_inputs(inputs, additional_forward_args)
        act = explainer._activation(inputs_t, args, bool(attribute_to_layer_input))
        groups = explainer._groups(layer_mask, act)[0]  # dense ids, -1 outside every group
        dense = result.first_order(self.index)  # float64 [B, *o, n]
        n_groups, batch = dense.shape[-1], act.shape[0]
        flat = dense.reshape(batch, -1, n_groups)
        flat = torch.cat([flat, flat.new_zeros(*flat.shape[:2], 1)], dim=2)
        pos = torch.where(groups < 0, n_groups, groups).expand(act.shape).reshape(batch, 1, -1)
        pos = pos.cpu().expand(-1, flat.shape[1], -1)
        out = torch.gather(flat, 2, pos).reshape(*dense.shape[:-1], *act.shape[1:])
        return out.to(act.device, attribution_dtype(str(act.dtype).removeprefix("torch.")))


def _layer_inputs(inputs: Any, additional_forward_args: Any) -> tuple[tuple, tuple, int]:
    """``(inputs, additional_forward_args, B)``: tuples, checked (tensor args have dim 0 = B)."""
    inputs_t = _as_tuple(inputs)
    if not inputs_t:
        raise ValueError("`inputs` must hold at least one tensor.")
    batch = next((x.shape[0] for x in inputs_t if isinstance(x, Tensor) and x.dim()), 1)
    format_additional_forward_args(additional_forward_args, batch)  # dim 0 = batch, no lists
    return inputs_t, _as_tuple(additional_forward_args), batch


@dataclass(frozen=True)
class _Patch:
    """What the masks act on: the activation ``[B, ...]``, its baseline and every element's
    group (``safe``, 0 where ``never``: elements outside every group, never masked)."""

    act: Tensor
    base: Tensor
    never: Tensor
    safe: Tensor


@dataclass
class _LayerValues:
    """The value function of a layer explanation: ``masks bool [m, n] -> [m, B, *o]``.

    For each mask the removed groups of the layer's activation are replaced by the baseline
    inside a forward hook, while the model re-runs on the inputs repeated once per mask. The
    activation is read once, by :meth:`group_ids` (without ``layer_mask``: its shape says the
    groups) or on the first evaluation, so a run whose values are all cached makes no forward
    pass.
    """

    explainer: LayerSpectralInteraction
    inputs: tuple
    args: tuple
    target: Any
    batch: int
    layer_mask: Tensor | None
    layer_baselines: float | Tensor | None
    to_input: bool
    _activation: Tensor | None = field(default=None, init=False)
    _patch: _Patch | None = field(default=None, init=False)

    def group_ids(self) -> list[int]:
        """The groups' ids, sorted; reads the activation now when there is no ``layer_mask``.

        Raises:
            TypeError, ValueError: for a bad ``layer_mask``, or (read now) ``layer_baselines``
                that do not broadcast to the activation, before any masked forward pass.
        """
        if self.layer_mask is not None:
            return self.explainer._mask_ids(self.layer_mask)[1]
        self._activation = self._read()
        ids = self.explainer._groups(None, self._activation)[1]
        self.patch()
        return ids

    def _read(self) -> Tensor:
        return self.explainer._activation(self.inputs, self.args, self.to_input)

    def patch(self) -> _Patch:
        """The activation, baseline and groups (read and checked on the first call)."""
        if self._patch is None:
            act = self._read() if self._activation is None else self._activation
            groups = self.explainer._groups(self.layer_mask, act)[0]
            baselines = 0.0 if self.layer_baselines is None else self.layer_baselines
            base = torch.as_tensor(baselines, dtype=act.dtype, device=act.device)
            if not _broadcasts(base.shape, act.shape):
                raise ValueError(
                    f"`layer_baselines` of shape {tuple(base.shape)} must broadcast to the layer "
                    f"activation's shape {tuple(act.shape)}."
                )
            self._patch = _Patch(act, base, groups < 0, groups.clamp_min(0))
        return self._patch

    def evaluate(self, masks: Tensor) -> Tensor:
        """The target output for each mask: ``[m, B, *o]``."""
        p = self.patch()
        k = masks.shape[0]
        keep = masks.to(p.act.device)[:, p.safe] | p.never
        perturbed = torch.where(keep, p.act.unsqueeze(0), p.base)
        perturbed = perturbed.reshape(k * p.act.shape[0], *p.act.shape[1:])

        def swap(current: Tensor) -> Tensor:
            if current.shape != perturbed.shape:
                raise ValueError(
                    f"the layer's activation has shape {tuple(current.shape)} in the batched "
                    f"forward but {tuple(perturbed.shape)} was expected; its dim 0 must grow "
                    "with the batch (or use perturbations_per_eval=1)."
                )
            return perturbed.to(current.dtype)

        handle = _register(self.explainer.layer, self.to_input, swap)
        try:
            with torch.no_grad():
                out = self.explainer.forward_func(
                    *_repeat(self.inputs, k), *_repeat(self.args, k)
                )
        finally:
            handle.remove()
        out = select_target(out, self.target, k, self.batch)
        return out.reshape(k, self.batch, *out.shape[1:])


# ---------------------------------------------------------------------- sweeps
def transformer_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The repeated blocks of a transformer, as ``(qualified name, module)`` pairs.

    Picks the ``nn.ModuleList`` of same-class modules holding the most parameters
    (``transformer.h`` of GPT-2, ``model.layers`` of Llama, ``encoder.layer`` of BERT, ...).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.ModuleList([torch.nn.Linear(2, 2)] * 3))
        >>> [name for name, _ in transformer_blocks(net)]
        ['0.0', '0.1', '0.2']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}.")
    best, best_size = None, -1
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if size > best_size:
            best, best_size = (name, module), size
    if best is None:
        raise ValueError(
            f"found no nn.ModuleList of blocks in {type(model).__name__}; pass the layers "
            "explicitly."
        )
    prefix, blocks = best
    return [(f"{prefix}.{i}" if prefix else str(i), block) for i, block in enumerate(blocks)]


@dataclass
class LayerSweep:
    """One :class:`~torchspex.Interactions` per layer, over the same features.

    Attributes:
        layer_names: a name per layer.
        results: the interactions measured at each layer.
    """

    layer_names: list[str]
    results: list[Interactions]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[Interactions]:
        return iter(self.results)

    def __getitem__(self, i: int) -> Interactions:
        return self.results[i]

    @property
    def feature_names(self) -> list[str]:
        """Labels of the features (shared by every layer)."""
        return self.results[0].feature_names if self.results else []

    def first_order(self, index: str = "SV") -> Tensor:
        """First-order values of every layer, ``[n_layers, *out, n_features]``."""
        return torch.stack([r.first_order(index) for r in self.results])

    def strongest(self, k: int = 5, order: int | None = None, index: str | None = None) -> list:
        """The ``k`` strongest interactions at each layer (``top_k`` per layer)."""
        return [
            (r if index is None else r.to_index(index)).top_k(k, order) for r in self.results
        ]

    def plot(
        self, index: str = "SV", output: tuple[int, ...] | None = None, ax: Any = None
    ) -> tuple[Any, Any]:
        """Heat map layers x features of the first-order values (matplotlib).

        Args:
            index: first-order index to show.
            output: which output to show when values are vectors (``None``: the sequence
                log-probability, ``(0,)``, of an LLM sweep; ``(t + 1,)``: its target token
                ``t``); other vector-valued sweeps must name one.
            ax: matplotlib axes to draw on (a new figure when ``None``).

        Returns:
            ``(figure, axes)``.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError('plotting needs matplotlib: pip install "torchspex[viz]"') from err
        data = self.first_order(index)
        if output is None:
            llm = data.dim() == 3 and hasattr(self.results[0], "output_tokens")
            output = (0,) if llm else ()
        key: tuple[slice | int, ...] = (slice(None), *output)
        data = data[key] if output else data
        if data.dim() != 2:
            raise ValueError(
                f"`output` must select one value per feature; values have shape "
                f"{tuple(data.shape[1:-1])} per feature, pass e.g. output=(0,)."
            )
        if ax is None:
            # constrained layout keeps the rotated feature labels and long layer names inside
            fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * data.shape[1] + 2.0),
                                            0.45 * len(self) + 2.2), layout="constrained")
        else:
            fig = ax.figure
        vmax = float(data.abs().max()) or 1.0
        image = ax.imshow(data.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_xticks(range(data.shape[1]), labels=self.feature_names, rotation=45, ha="right")
        ax.set_yticks(range(len(self)), labels=self.layer_names)
        ax.set_xlabel("feature")
        ax.set_ylabel("layer")
        fig.colorbar(image, ax=ax, label=index)
        if output and hasattr(self.results[0], "output_tokens"):
            tokens = self.results[0].output_tokens
            ax.set_title(f"{index} of the sequence log-probability" if output[0] == 0
                         else f"{index} for target token {tokens[output[0] - 1]!r}")  # fmt: skip
        elif output:
            ax.set_title(f"{index} of output {output}")
        return fig, ax


def _named_layers(
    layers: nn.Module | Sequence[nn.Module] | Sequence[tuple[str, nn.Module]],
    root: Any = None,
) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` pairs: a model's :func:`transformer_blocks`, or the given modules
    named by their qualified names in ``root`` (a module; else, or where not found there, by
    their positions in the sequence)."""
    if isinstance(layers, nn.ModuleList) or not isinstance(layers, nn.Module):
        items = list(layers)
        where = ({id(m): name for name, m in root.named_modules() if name}
                 if isinstance(root, nn.Module) else {})  # fmt: skip
        named = [it if isinstance(it, tuple) else (where.get(id(it), str(i)), it)
                 for i, it in enumerate(items)]  # fmt: skip
    else:
        named = transformer_blocks(layers)
    if not named or not all(isinstance(m, nn.Module) for _, m in named):
        raise TypeError("`layers` must be a model, or a non-empty sequence of nn.Modules.")
    return named


def sweep_layers(
    forward_func: Callable[..., Any],
    layers: nn.Module | Sequence[nn.Module] | Sequence[tuple[str, nn.Module]],
    inputs: Tensor | tuple[Any, ...],
    generator: torch.Generator | int | None = None,
    **attribute_kwargs: Any,
) -> LayerSweep:
    """Runs :class:`LayerSpectralInteraction` at every layer, with the same masks at each.

    Args:
        forward_func: the model or callable.
        layers: a model (its :func:`transformer_blocks` are used), a sequence of modules
            (named by their qualified names in ``forward_func`` where it is a module or a
            module's method, else by their positions), or ``(name, module)`` pairs.
        inputs: as for :meth:`LayerSpectralInteraction.attribute`.
        generator: seed or generator; every layer starts from the same state, so the layers
            are measured on identical masks.
        **attribute_kwargs: any other argument of :meth:`LayerSpectralInteraction.attribute`
            (with ``cache``, each layer's values are stored under their own fingerprint, which
            also covers the layer's name here).

    Returns:
        :class:`LayerSweep` with one result per layer.
    """
    root = forward_func if isinstance(forward_func, nn.Module) else getattr(
        forward_func, "__self__", None)
    named = _named_layers(layers, root)
    if isinstance(generator, torch.Generator):
        state = generator.get_state()
    results = []
    cached = attribute_kwargs.get("cache") is not None
    for name, layer in named:
        if isinstance(generator, torch.Generator):
            generator.set_state(state)
        kwargs = dict(attribute_kwargs)
        if cached:  # the sweep's name for the layer, for forward functions that are not modules
            kwargs["cache_key"] = (attribute_kwargs.get("cache_key"), name)
        explainer = LayerSpectralInteraction(forward_func, layer)
        results.append(explainer.attribute(inputs, generator=generator, **kwargs))
    return LayerSweep([name for name, _ in named], results)

