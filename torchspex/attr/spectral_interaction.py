"""SpectralInteraction: Captum's perturbation-attribution API, returning interactions."""

from __future__ import annotations

import inspect
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from captum.attr import PerturbationAttribution
from torch import Tensor

from torchspex._pipeline import Problem, Run
from torchspex.attr._forward import MaskedForward, check_perturbations_per_eval
from torchspex.attr._inputs import (
    GroupLayout,
    Partition,
    TargetType,
    format_additional_forward_args,
    format_baselines,
    format_feature_mask,
    format_inputs,
    format_target,
    partition_examples,
    select_examples,
)
from torchspex.attr.result import (
    AttributionInteractions,
    captum_method,
    input_layout,
    refuse_captum_caller,
)
from torchspex.cache import fingerprint
from torchspex.decoders.base import Evaluator
from torchspex.distributed import resolve_process_group
from torchspex.fourier import DeferredSpectrum, SparseSpectrum, canonical_index

__all__ = ["FirstOrderAttribution", "SpectralInteraction"]

def _warn_if_training(forward_func: Any) -> None:
    module = forward_func if isinstance(forward_func, torch.nn.Module) else None
    if module is None and isinstance(getattr(forward_func, "__self__", None), torch.nn.Module):
        module = forward_func.__self__
    if module is None:
        return
    noisy = [
        type(m).__name__
        for m in module.modules()
        if m.training and ("Dropout" in type(m).__name__ or "BatchNorm" in type(m).__name__)
    ]
    if noisy:
        warnings.warn(
            f"the model is in training mode with {noisy[0]} active, so its outputs are random "
            "or depend on the batch; call `model.eval()` first (torchspex leaves the mode alone).",
            stacklevel=3,
        )


class SpectralInteraction(PerturbationAttribution):
    """Feature interactions of a model from its sparse Fourier spectrum, Captum-style.

    Follows the API of Captum's perturbation methods (``KernelShap``,
    ``ShapleyValueSampling``): the same constructor and Captum's names and conventions for
    ``inputs``, ``baselines``, ``target``, ``additional_forward_args``, ``feature_mask`` and
    ``perturbations_per_eval``. It is not a drop-in replacement: :meth:`attribute` returns an
    :class:`~torchspex.attr.AttributionInteractions` holding every interaction, in any index,
    from one set of forward passes (SPEX, Kang et al., ICML 2025; ProxySPEX, Butler et al.,
    NeurIPS 2025; or all ``2^n`` masks), not an attribution tensor. Where Captum needs tensors
    (``captum.metrics.infidelity``, ``sensitivity_max``, ``NoiseTunnel``) use
    :meth:`as_captum`, a Captum attribution method returning ``first_order("SV")``; handing
    Captum :meth:`attribute` or its result raises ``TypeError`` naming that form, before any
    forward pass.

    Args:
        forward_func: the model or any callable ``forward_func(*inputs, *additional_forward_args)
            -> Tensor [batch, ...]`` whose output has one row per input row.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 3).double()
        >>> explainer = SpectralInteraction(model)
        >>> result = explainer.attribute(torch.ones(2, 4, dtype=torch.float64), target=1,
        ...                              method="exhaustive")
        >>> result.first_order("SV").shape
        torch.Size([2, 4])
        >>> torch.allclose(result.first_order("SV")[0], model.weight[1].detach())
        True
    """

    def __init__(self, forward_func: Callable[..., Any]) -> None:
        if not callable(forward_func):
            raise TypeError(f"`forward_func` must be callable; got {type(forward_func).__name__}.")
        super().__init__(forward_func)

    def has_convergence_delta(self) -> bool:
        """True: every result carries :attr:`AttributionInteractions.convergence_delta`."""
        return True

    def compute_convergence_delta(self, attributions: AttributionInteractions) -> Tensor:
        """The completeness gap ``float64 [B, *o]`` of a result of :meth:`attribute`."""
        if not isinstance(attributions, AttributionInteractions):
            raise TypeError(
                "`attributions` must be the AttributionInteractions returned by attribute(); got "
                f"{type(attributions).__name__}."
            )
        return attributions.convergence_delta

    def attribute_future(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported (as in Captum's KernelShap and Lime)."""
        raise NotImplementedError("attribute_future is not implemented for SpectralInteraction.")

    def as_captum(self, index: str = "SV") -> FirstOrderAttribution:
        """This explainer as a Captum attribution method returning Captum's tensors.

        The form for Captum's metrics and wrappers: ``as_captum().attribute(inputs, ...)`` takes
        :meth:`attribute`'s arguments and returns ``attribute(...).first_order(index)``:
        attributions shaped like the inputs, in their dtype, a tuple for tuple inputs, with
        ``(attributions, delta)`` for ``return_convergence_delta=True``.

        Args:
            index: the first-order values to return: ``"SV"`` (Shapley, default), ``"BV"``
                (Banzhaf), or any index of :meth:`~torchspex.Interactions.first_order`. It is
                also the ``index`` of the underlying :meth:`attribute` calls, so sampling
                methods fit the design made for it.

        Returns:
            :class:`FirstOrderAttribution`, a ``captum.attr.PerturbationAttribution``.

        Raises:
            ValueError: for an unknown index.

        Example:
            >>> import torch
            >>> from captum.attr import NoiseTunnel
            >>> from captum.metrics import infidelity, sensitivity_max
            >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
            >>> shapley = SpectralInteraction(model).as_captum()        # index="SV"
            >>> x = torch.randn(2, 4)
            >>> attr = shapley.attribute(x, target=1, method="exhaustive")
            >>> attr.shape, attr.dtype
            (torch.Size([2, 4]), torch.float32)
            >>> def perturb(inputs):
            ...     noise = 0.1 * torch.randn_like(inputs)
            ...     return noise, inputs - noise
            >>> infidelity(model, perturb, x, attr, target=1).shape
            torch.Size([2])
            >>> sensitivity_max(shapley.attribute, x, target=1, method="exhaustive").shape
            torch.Size([2])
            >>> smooth = NoiseTunnel(shapley).attribute(x, nt_samples=4, target=1,
            ...                                         method="exhaustive")
            >>> smooth.shape
            torch.Size([2, 4])
        """
        return FirstOrderAttribution(self, index)

    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Tensor | tuple[Tensor, ...] | None = None,
        n_samples: int | None = None,
        method: str = "auto",
        max_order: int | None = None,
        index: str = "k-SII",
        perturbations_per_eval: int | str = "auto",
        show_progress: bool = False,
        generator: torch.Generator | int | None = None,
        feature_names: Sequence[str] | None = None,
        process_group: Any = None,
        cache: str | os.PathLike | None = None,
        nonfinite: str = "raise",
        **decoder_options: Any,
    ) -> AttributionInteractions:
        """Learns the sparse spectrum of each example's value function and its interactions.

        The value of a mask (bool over feature groups, True = kept) for example ``b`` is the
        model's target output on ``inputs[b]`` with every removed group replaced by its
        baseline, averaged over the background rows when ``baselines`` is a background set.

        Args:
            inputs: ``Tensor [B, ...]`` or a tuple of them (dim 0 the batch in each).
            baselines: ``None`` (zeros), a number, a tensor broadcastable to the input (dim 0
                ``1`` or ``B``), or a tuple of those per input. A tensor with one more leading
                dimension, ``[R, ...]``, is a background set: the ``R`` outputs of each mask
                are averaged (shap-style).
            target: Captum's ``TargetType``: ``None`` (keep every output: coefficients
                ``[s, B, *o]``), an int or tuple (the same output for every example), or a list /
                1-D tensor of length ``B`` (one per example). Wrapping the model to return the
                value to explain is the clearer alternative, as Captum advises.
            additional_forward_args: passed after the inputs; tensors are repeated along dim 0
                with the perturbations, as in Captum.
            feature_mask: integer group ids broadcastable to the inputs, global across a tuple,
                dim 0 ``1`` (shared) or ``B`` (per example); ids may have gaps, and results
                name the original ids. A negative id marks positions that are never a
                feature and always keep their input value (e.g. special tokens; a torchspex
                extension). ``None``: every scalar is a feature. Examples whose
                groups differ are evaluated in separate forward passes; tensors and lists in
                ``additional_forward_args`` whose dim 0 is ``B`` are then split with them.
            n_samples: the most distinct masks the decoder may evaluate (``None``: the method's
                default). Non-exhaustive methods also evaluate the all-kept and all-removed
                masks (the convergence delta), counted in ``n_samples``.
            method: ``"auto"`` (default; chooses from ``n``, the budget and the index, and
                records why in each example's ``info["decoder_info"][i]["auto"]``),
                ``"regression"``, ``"spex"``, ``"proxyspex"`` or ``"exhaustive"`` (all ``2^n``
                masks, exact); see :func:`torchspex.explain`.
            max_order: order cap of the reported interactions (and the decoder's target order).
            index: interaction index of the result (default ``"k-SII"``, see the README's table).
                The index also picks the design of ``method="auto"`` / ``"regression"``: the
                Shapley family (``"k-SII"``, ``"SV"``, ``"SII"``, ``"FSII"``, ...) samples
                coalitions by the Shapley kernel, so ``first_order("SV")`` and the pairs come from a
                fit made for them; the Banzhaf family (``"FBII"``, ``"BII"``, ``"BV"``,
                ``"Fourier"``, ``"Moebius"``) samples uniform masks. Reading an index of the other
                family from the result warns once.
            perturbations_per_eval: masks per forward call (each call holds
                ``perturbations_per_eval * R * B`` rows), or ``"auto"`` (default): as many as
                the request allows up to a memory cap, halved on out-of-memory.
            show_progress: show a tqdm bar over the masks evaluated (all examples share them),
                moving with every forward call, ``"fitting"`` while the decoder works; it ends
                at 100% (the total becomes the masks evaluated when fewer were needed than
                planned). With ``perturbations_per_eval="auto"`` on the CPU, forward calls then
                hold at most 128 rows so the bar moves often. Off by default, as in Captum.
            generator: ``torch.Generator`` or int seed for the decoder's sampling (``None``:
                seed 0). Every example uses the same stream, so an example's result does not
                depend on the rest of the batch.
            feature_names: display labels, one per feature group.
            process_group: share the forward passes among the ranks of a ``torch.distributed``
                process group: ``None`` (default) means the default group whenever
                torch.distributed is initialized (e.g. under ``torchrun``), ``False`` never.
                Every rank calls ``attribute`` with the same arguments and generator seed (its
                model and inputs on its own device); each round of masks is split across the
                ranks and the values all-gathered, so every rank returns the same result. The
                forward-pass counts in ``info`` are this rank's. See :mod:`torchspex.distributed`.
            cache: path of an evaluation store (SQLite, see :mod:`torchspex.cache`): every
                batch of forward passes is appended as it completes, keyed by a fingerprint of
                the problem (inputs, baselines, target, additional_forward_args, feature_mask,
                method settings, generator state and the model's weights). Re-running the same
                call after an interruption makes only the forward passes still missing.
            nonfinite: ``"raise"`` (default): a NaN or inf model output raises ``ValueError``
                naming how many masks and one of them. ``"drop"`` (``method="proxyspex"`` only):
                those masks are left out of each example's fit, with a warning, and counted in
                ``info["decoder_info"][b]["n_dropped"]``.
            **decoder_options: method-specific settings passed to the decoder.

        Returns:
            :class:`~torchspex.attr.AttributionInteractions` with coefficients ``[s, B, *o]``.

        Raises:
            TypeError, ValueError: for malformed arguments, before any forward pass.
            BudgetTooSmallError: when ``n_samples`` is below the method's minimum (which it
                states), before any forward pass.
        """
        refuse_captum_caller("SpectralInteraction", "AttributionInteractions", _RIGHT_FORM)
        # the steps of torchspex/_pipeline.py: validate, plan, evaluate + decode, assemble
        request = _validate(
            inputs, baselines, target, additional_forward_args, feature_mask, method=method,
            index=index, max_order=max_order, n_samples=n_samples, generator=generator,
            nonfinite=nonfinite, decoder_options=decoder_options,
            perturbations_per_eval=perturbations_per_eval, process_group=process_group,
            feature_names=feature_names, cache=cache,
        )  # fmt: skip
        parts = _plan(request)
        _warn_if_training(self.forward_func)
        state = request.problem.generator.get_state()
        forwards = [_masked_forward(self.forward_func, request, part) for part in parts]
        with Run() as run:
            if show_progress:
                label = f"{self.get_name()} attribution"
                run.show_progress(label, [request.problem.planned(p.n_features) for p in parts])
                for fwd in forwards:
                    fwd.limit_rows_for_progress()
            outcomes = [
                _explain_part(self.forward_func, request, part, fwd, run, state)
                for part, fwd in zip(parts, forwards)
            ]
        if outcomes[0].state is not None:
            request.problem.generator.set_state(outcomes[0].state)
        return _assemble(request, outcomes, forwards)


_RIGHT_FORM = (
    "Pass `explainer.as_captum().attribute` instead (first-order Shapley values shaped like the "
    'inputs, as `result.first_order("SV")`), e.g. '
    "`sensitivity_max(explainer.as_captum().attribute, inputs, target=...)`; Captum's wrappers "
    "take `explainer.as_captum()`, e.g. `NoiseTunnel(explainer.as_captum())`."
)


class FirstOrderAttribution(PerturbationAttribution):
    """A :class:`SpectralInteraction` as a Captum attribution method: Captum's tensors out.

    Made by :meth:`SpectralInteraction.as_captum`; pass it (or its ``attribute``) wherever
    Captum takes an attribution method: ``captum.metrics.sensitivity_max``,
    ``captum.metrics.infidelity`` (its attributions), ``captum.attr.NoiseTunnel``.

    Args:
        explainer: the explainer whose :meth:`~SpectralInteraction.attribute` runs.
        index: the first-order values returned (``"SV"``: Shapley values).
    """

    def __init__(self, explainer: SpectralInteraction, index: str = "SV") -> None:
        if not isinstance(explainer, SpectralInteraction):
            raise TypeError(
                f"`explainer` must be a SpectralInteraction; got {type(explainer).__name__}."
            )
        super().__init__(explainer.forward_func)
        self.explainer = explainer
        self.index = canonical_index(index)

    def has_convergence_delta(self) -> bool:
        """True: ``return_convergence_delta=True`` adds the completeness gap."""
        return True

    def compute_convergence_delta(self, attributions: Any, *args: Any, **kwargs: Any) -> Tensor:
        """Not available from tensors; pass ``return_convergence_delta=True`` to ``attribute``."""
        raise NotImplementedError(
            "compute_convergence_delta needs the interactions; call "
            "`attribute(..., return_convergence_delta=True)` for (attributions, delta)."
        )

    def attribute_future(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported (as in Captum's KernelShap and Lime)."""
        raise NotImplementedError("attribute_future is not implemented for SpectralInteraction.")

    @captum_method
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        feature_mask: Tensor | tuple[Tensor, ...] | None = None,
        n_samples: int | None = None,
        method: str = "auto",
        max_order: int | None = None,
        perturbations_per_eval: int | str = "auto",
        show_progress: bool = False,
        generator: torch.Generator | int | None = None,
        return_convergence_delta: bool = False,
        **kwargs: Any,
    ) -> Any:
        """First-order values of :meth:`SpectralInteraction.attribute`, in Captum's layout.

        Args:
            inputs, baselines, target, additional_forward_args, feature_mask, n_samples,
                method, max_order, perturbations_per_eval, show_progress, generator: as in
                :meth:`SpectralInteraction.attribute`.
            return_convergence_delta: also return the completeness gap
                :attr:`AttributionInteractions.convergence_delta` (``float64 [B, *o]``).
            **kwargs: the other keywords of :meth:`SpectralInteraction.attribute` (``cache``,
                ``feature_names``, decoder options, ...); not ``index``, set by ``as_captum``.

        Returns:
            ``result.first_order(index)``: per input ``[B, *o, *input.shape[1:]]`` in the
            input's dtype and device (a tuple for tuple inputs, a tensor for a tensor), every
            position holding its feature group's value; ``(attributions, delta)`` when
            ``return_convergence_delta``.

        Raises:
            TypeError: for ``index`` (choose it with ``as_captum(index=...)``); otherwise as
                :meth:`SpectralInteraction.attribute`, before any forward pass.
        """
        if "index" in kwargs:
            raise TypeError(
                "`index` is set by `as_captum(index=...)`; this attribution method returns "
                f"{self.index!r} values. Use `explainer.as_captum({kwargs['index']!r})`."
            )
        result = self.explainer.attribute(
            inputs, baselines, target, additional_forward_args, feature_mask,
            n_samples=n_samples, method=method, max_order=max_order, index=self.index,
            perturbations_per_eval=perturbations_per_eval, show_progress=show_progress,
            generator=generator, **kwargs,
        )  # fmt: skip
        attributions = result.first_order(self.index)
        if return_convergence_delta:
            return attributions, result.convergence_delta
        return attributions


def _first_order_attribute(
    self: SpectralInteraction, inputs: Any, *args: Any, **kwargs: Any
) -> Any:
    """What ``NoiseTunnel(SpectralInteraction(model))`` calls (``attribute.__wrapped__``).

    Kept for code written before :meth:`SpectralInteraction.as_captum`, the documented form:
    the same as ``NoiseTunnel(explainer.as_captum())``.
    """
    return FirstOrderAttribution.attribute(self.as_captum("SV"), inputs, *args, **kwargs)


# Captum's NoiseTunnel calls `attribution_method.attribute.__wrapped__(self, ...)` (it expects
# Captum's usage-logging decorator); the signature stays attribute()'s own for help() and IDEs.
SpectralInteraction.attribute.__signature__ = inspect.signature(  # type: ignore[attr-defined]
    SpectralInteraction.attribute
)
SpectralInteraction.attribute.__wrapped__ = _first_order_attribute  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- the steps of attribute
@dataclass(frozen=True)
class _Request:
    """A validated :meth:`SpectralInteraction.attribute` call, formatted for the steps.

    Attributes:
        inputs: per input ``[B, *s]``; ``is_tuple``: whether ``inputs`` was a tuple.
        baselines: per input ``[R | 1, B | 1, *s']``; ``n_background``: ``R``.
        layout: which feature group every input position belongs to.
        feature_mask: as given (part of the cache key).
        target: the formatted Captum target; ``args``: the additional forward arguments.
        problem: the decode settings shared by every example.
    """

    inputs: tuple[Tensor, ...]
    is_tuple: bool
    baselines: tuple[Tensor, ...]
    n_background: int
    layout: GroupLayout
    feature_mask: Any
    target: TargetType
    args: tuple[Any, ...]
    problem: Problem
    perturbations_per_eval: int | str
    process_group: Any
    feature_names: Sequence[str] | None
    cache: str | os.PathLike | None

    @property
    def batch(self) -> int:
        """Number of examples ``B``."""
        return int(self.inputs[0].shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature groups across the batch."""
        return self.layout.n_features


def _validate(
    inputs: Any,
    baselines: Any,
    target: Any,
    additional_forward_args: Any,
    feature_mask: Any,
    *,
    perturbations_per_eval: Any,
    process_group: Any,
    feature_names: Sequence[str] | None,
    cache: str | os.PathLike | None,
    **problem: Any,
) -> _Request:
    """Step 1: every argument checked and formatted, before any forward pass.

    ``problem`` holds the settings of :meth:`~torchspex._pipeline.Problem.check`.
    """
    inputs_t, is_tuple = format_inputs(inputs)
    batch = inputs_t[0].shape[0]
    baselines_t, n_background = format_baselines(baselines, inputs_t)
    layout = format_feature_mask(feature_mask, inputs_t)
    target = format_target(target, batch)
    args = format_additional_forward_args(additional_forward_args, batch)
    checked = Problem.check(layout.n_features, **problem)
    perturbations_per_eval = check_perturbations_per_eval(perturbations_per_eval)
    group = resolve_process_group(process_group)
    if feature_names is not None and len(feature_names) != layout.n_features:
        raise ValueError(
            f"`feature_names` must have one name per feature group ({layout.n_features}); got "
            f"{len(feature_names)}."
        )
    return _Request(
        inputs_t, is_tuple, baselines_t, n_background, layout, feature_mask, target, args,
        checked, perturbations_per_eval, group, feature_names, cache,
    )  # fmt: skip


def _plan(request: _Request) -> list[Partition]:
    """Step 2: the examples grouped by the feature groups they hold, one decode problem each.

    Examples of one partition share every masked forward pass. With several partitions, every
    size's budget is checked first, so that none fails after another's forward passes.

    Raises:
        BudgetTooSmallError: when ``n_samples`` is below a partition's minimum.
    """
    parts = partition_examples(request.layout.presence)
    if len(parts) > 1:
        for n_part in sorted({p.n_features for p in parts}, reverse=True):
            request.problem.check_budget(n_part)
    return parts


def _masked_forward(
    forward_func: Callable[..., Any], request: _Request, part: Partition
) -> MaskedForward:
    """Step 3's value function for one partition: its examples and groups, renumbered."""
    members = part.members
    batch, n_features = request.batch, request.n_features
    whole = members.shape[0] == batch
    lut = torch.full((n_features + 1,), -1, dtype=torch.long)
    lut[part.columns] = torch.arange(part.n_features)
    lut[n_features] = part.n_features  # never a feature: always kept
    sub_inputs, sub_bases, sub_maps = [], [], []
    for x, base, gmap in zip(request.inputs, request.baselines, request.layout.group_maps):
        idx = members.to(x.device)
        sub_inputs.append(x if whole else x[idx])
        sub_bases.append(base if whole or base.shape[1] == 1 else base[:, idx])
        local = lut.to(gmap.device)[gmap]
        sub_maps.append(local if whole or local.shape[0] == 1 else local[idx])
    target, args = request.target, request.args
    if not whole:
        target = select_examples(target, members, batch)
        args = tuple(select_examples(a, members, batch) for a in args)
    return MaskedForward(
        forward_func, tuple(sub_inputs), tuple(sub_bases), tuple(sub_maps), part.n_features,
        target, args, request.perturbations_per_eval,
    )  # fmt: skip


class _SharedColumns:
    """A partition's evaluations, shared by its examples: example ``b`` reads column ``b``.

    The first request of any example is preceded by the two probes (all kept, all removed), a
    small first forward call that checks the model and the target; their values end the
    convergence delta.
    """

    def __init__(self, shared: Evaluator, n_features: int) -> None:
        self.shared = shared
        kept = torch.ones(n_features, dtype=torch.bool)
        self.probes = torch.stack([kept, ~kept])
        self.probed = False

    def column(self, b: int, masks: Tensor) -> Tensor:
        """Example ``b``'s values of ``masks``: ``float64 [m, *o]``."""
        if not self.probed:
            self.shared(self.probes)
            self.probed = True
        return self.shared(masks)[:, b]

    def ends(self) -> Tensor:
        """``float64 [2, B_p, *o]``: every example's value with all kept and all removed."""
        return self.shared(self.probes)


@dataclass(frozen=True)
class _PartOutcome:
    """Steps 3-4 for one partition: each member's spectrum over the partition's groups."""

    part: Partition
    spectra: list[SparseSpectrum]
    decoder_info: list[dict[str, Any]]
    ends: Tensor  # float64 [2, B_p, *o]: all kept, all removed
    n_evaluations: int
    state: Tensor | None  # the generator's state after the first member's decode
    decode_wall: float = 0.0  # seconds inside the decoders, their forward passes included


def _explain_part(
    forward_func: Callable[..., Any],
    request: _Request,
    part: Partition,
    fwd: MaskedForward,
    run: Run,
    state: Tensor,
) -> _PartOutcome:
    """Steps 3-4: one partition's forward passes (shared, cached), then a decode per example.

    Every example decodes with a generator started at ``state``, so its result does not depend
    on the rest of the batch. With a store or a progress bar the model gets one forward batch
    at a time, so every completed batch is on disk (and counted) before the next one starts.
    """
    problem, n_part = request.problem, part.n_features
    store = None
    if request.cache is not None:
        key = fingerprint(
            "SpectralInteraction", request.inputs, request.baselines, request.feature_mask,
            request.target, request.args, problem.method, problem.n_samples, problem.max_order,
            state, problem.decoder_options, forward_func, part.members, part.columns,
        )  # fmt: skip
        store = run.open_store(request.cache, key, n_part, request.process_group)
    progress = run.progress
    shared = Evaluator(
        fwd, n_part, process_group=request.process_group, store=store,
        nonfinite=problem.nonfinite, progress=progress,
        batch_size=fwd.chunk if store is not None or progress is not None else None,
    )  # fmt: skip
    columns = _SharedColumns(shared, n_part)
    spectra, infos, first = [], [], None
    decode_wall = 0.0
    for b in range(part.members.shape[0]):
        evaluator = Evaluator(
            partial(columns.column, b), n_part, n_samples=problem.n_samples,
            nonfinite=problem.nonfinite, progress=None if progress is None else progress.phases(),
        )  # fmt: skip
        generator = problem.replay(state)
        start = time.perf_counter()
        spectrum, info = problem.decode(evaluator, n_part, generator=generator)
        decode_wall += time.perf_counter() - start
        first = generator.get_state() if first is None else first
        spectra.append(spectrum.prune(atol=0.0))
        infos.append(info)
    ends = columns.ends()
    return _PartOutcome(part, spectra, infos, ends, shared.n_evaluations, first, decode_wall)


def _assemble(
    request: _Request, outcomes: list[_PartOutcome], forwards: list[MaskedForward]
) -> AttributionInteractions:
    """Step 5: the examples' spectra merged into one result, with the convergence delta."""
    batch, n_features = request.batch, request.n_features
    out_shape = tuple(outcomes[-1].ends.shape[2:])
    full_value = torch.zeros(batch, *out_shape, dtype=torch.float64)
    empty_value = torch.zeros_like(full_value)
    decoder_info: list[Any] = [None] * batch
    pieces: list[tuple[SparseSpectrum, int, Tensor]] = []
    for outcome in outcomes:
        members, columns = outcome.part.members, outcome.part.columns
        full_value[members] = outcome.ends[0]
        empty_value[members] = outcome.ends[1]
        for example, spec, about in zip(members.tolist(), outcome.spectra, outcome.decoder_info):
            decoder_info[example] = about
            pieces.append((spec, example, columns))
    spectrum: SparseSpectrum
    if any(isinstance(spec, DeferredSpectrum) and spec.is_deferred for spec, _, _ in pieces):
        # Shapley values asked for: the examples' deferred parts are merged when first read
        known = [(spec.known if isinstance(spec, DeferredSpectrum) else spec, example, cols)
                 for spec, example, cols in pieces]  # fmt: skip
        spectrum = DeferredSpectrum(_merge(known, batch, out_shape, n_features),
                                    partial(_merge, pieces, batch, out_shape, n_features))
    else:
        spectrum = _merge(pieces, batch, out_shape, n_features)
    ones = torch.ones(1, n_features, dtype=torch.bool)
    ends = spectrum.known if isinstance(spectrum, DeferredSpectrum) else spectrum
    learned = ends.evaluate(ones)[0] - ends.coefficients.sum(dim=0)
    inputs = request.inputs
    info: dict[str, Any] = {
        "decoder_info": decoder_info,
        "n_background": request.n_background,
        "n_forward_calls": sum(fwd.n_calls for fwd in forwards),
        "n_forward_rows": sum(fwd.n_rows for fwd in forwards),
        "forward_seconds": sum(fwd.forward_seconds for fwd in forwards),
        # the decoders' own time: their wall time less the forward passes they asked for
        # (masks built on the model's device included in the forwards)
        "decode_seconds": max(0.0, sum(o.decode_wall for o in outcomes)
                              - sum(fwd.forward_seconds for fwd in forwards)),
        "decode_device": "cpu (float64; LightGBM proxies, regression, SPEX and every "
                         "conversion; only the masked forward passes run on the model's device)",
        "perturbations_per_eval": forwards[-1].chunk,
        "inputs_value": full_value,
        "baselines_value": empty_value,
        "convergence_delta": learned - (full_value - empty_value),
        "input_layout": input_layout(
            request.layout.group_maps, [tuple(x.shape) for x in inputs], request.is_tuple,
            inputs[0].device, [x.dtype for x in inputs],
        ),
    }
    return request.problem.result(
        AttributionInteractions, spectrum, n_evaluations=sum(o.n_evaluations for o in outcomes),
        feature_names=request.feature_names, feature_ids=request.layout.feature_ids.tolist(),
        info=info,
    )  # fmt: skip


def _merge(
    pieces: list[tuple[SparseSpectrum, int, Tensor]],
    batch: int,
    out_shape: tuple[int, ...],
    n_features: int,
) -> SparseSpectrum:
    """One spectrum ``[s, B, *o]`` over the union of the examples' supports (each piece: an
    example's spectrum over its partition's columns)."""
    width = max((p[0].indices.shape[1] for p in pieces), default=0)
    all_idx, all_coef = [], []
    for spec, example, columns in pieces:
        idx, coef = spec.indices, spec.coefficients
        mapped = torch.where(idx >= 0, columns[idx.clamp(min=0)], idx)
        pad = torch.full((idx.shape[0], width - idx.shape[1]), -1, dtype=torch.long)
        all_idx.append(torch.cat([mapped, pad], dim=1))
        full = torch.zeros(coef.shape[0], batch, *out_shape, dtype=coef.dtype)
        full[:, example] = coef
        all_coef.append(full)
    if not all_idx:
        return SparseSpectrum.zeros(n_features, (batch, *out_shape))
    return SparseSpectrum(torch.cat(all_idx), torch.cat(all_coef), n_features).coalesce()
