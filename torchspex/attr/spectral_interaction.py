"""SpectralInteraction: Captum's perturbation-attribution API, returning interactions."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from captum.attr import PerturbationAttribution
from torch import Tensor

from torchspex.attr._forward import MaskedForward, check_perturbations_per_eval
from torchspex.attr._inputs import (
    Partition,
    format_additional_forward_args,
    format_baselines,
    format_feature_mask,
    format_inputs,
    format_target,
    partition_examples,
    select_examples,
)
from torchspex.attr.result import AttributionInteractions, input_layout
from torchspex.cache import EvaluationStore, fingerprint
from torchspex.decoders.base import (
    BudgetTooSmallError,
    Evaluator,
    Progress,
    check_nonfinite,
    planned_evaluations,
)
from torchspex.decoders.dispatch import check_method, decode
from torchspex.decoders.exhaustive import MAX_EXHAUSTIVE_FEATURES, check_exhaustive
from torchspex.distributed import on_every_rank, resolve_process_group
from torchspex.explain import check_generator, check_n_samples
from torchspex.fourier import SparseSpectrum, canonical_index
from torchspex.interactions import _check_order

__all__ = ["SpectralInteraction"]

#: Masks every non-exhaustive run evaluates besides the decoder's: all kept and all removed.
_N_PROBES = 2


class _DryRun(Exception):
    """Raised by the dry-run evaluator at the decoder's first evaluation: the budget is valid."""


class _DryRunEvaluator(Evaluator):
    def __call__(self, masks: Tensor) -> Tensor:
        raise _DryRun


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


def _reserve(method: str, n_features: int, n_samples: int | None) -> int:
    """Masks of the budget kept for the probes: none. The probes are the two corners (all
    kept, all removed), which every decoder evaluates within its budget anyway (they make the
    learned function exact there; see ``decoders/dispatch.py``), so they cost nothing extra."""
    return 0


def _decoder_budget(method: str, n_features: int, n_samples: int | None) -> int | None:
    return None if n_samples is None else n_samples - _reserve(method, n_features, n_samples)


def _budget_error(
    err: BudgetTooSmallError,
    method: str,
    n_features: int,
    n_samples: int,
    options: dict[str, Any] | None = None,
) -> BudgetTooSmallError:
    """The decoder's refusal restated for the whole budget: one minimum, advice that works."""
    reserve = _reserve(method, n_features, n_samples)
    if reserve == 0:  # the decoder's whole budget: its message stands
        return err
    minimum = err.minimum + reserve
    if n_features <= MAX_EXHAUSTIVE_FEATURES and method != "exhaustive":
        minimum = min(minimum, 1 << n_features)  # then every mask is evaluated instead
    opts = options or {}
    advice = ""
    if "b" in opts:
        advice += " or drop the `b` option"
    if opts.get("degree_parameter", 0) > 2:
        advice += " or lower `degree_parameter`"
    from torchspex.decoders.dispatch import METHODS

    if "auto" in METHODS and method not in ("auto", "regression") and n_samples >= n_features + 2:
        advice += f", or use method='auto' (it works from n + 2 = {n_features + 2} masks)"
    where = (
        f" ({err.minimum} for the decoder plus the {reserve} masks SpectralInteraction always "
        "evaluates: all features kept and all removed)"
        if reserve and minimum == err.minimum + reserve
        else ""
    )
    return BudgetTooSmallError(
        f"method={method!r} needs n_samples >= {minimum} for {n_features} features{where}; got "
        f"{n_samples}. Raise `n_samples` to at least {minimum}{advice}.",
        minimum,
    )


class SpectralInteraction(PerturbationAttribution):
    """Feature interactions of a model from its sparse Fourier spectrum, Captum-style.

    A drop-in sibling of Captum's ``KernelShap`` / ``ShapleyValueSampling``: same constructor,
    same ``attribute`` arguments (Captum's names and conventions for ``inputs``, ``baselines``,
    ``target``, ``additional_forward_args``, ``feature_mask``, ``perturbations_per_eval``), but
    the result holds every interaction, in any index, from one set of forward passes: SPEX
    (Kang et al., ICML 2025), ProxySPEX (Butler et al., NeurIPS 2025) or all ``2^n`` masks.

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
        index: str = "FBII",
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
            index: interaction index of the result (``"FBII"``, ``"SII"``, ``"k-SII"``, ...).
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
        inputs_t, is_tuple = format_inputs(inputs)
        batch = inputs_t[0].shape[0]
        baselines_t, n_background = format_baselines(baselines, inputs_t)
        layout = format_feature_mask(feature_mask, inputs_t)
        target = format_target(target, batch)
        args = format_additional_forward_args(additional_forward_args, batch)
        method = check_method(method)
        index = canonical_index(index)
        n_features = layout.n_features
        max_order = _check_order(max_order, n_features)
        n_samples = check_n_samples(n_samples)
        perturbations_per_eval = check_perturbations_per_eval(perturbations_per_eval)
        generator = check_generator(generator)
        group = resolve_process_group(process_group)
        nonfinite = check_nonfinite(nonfinite, method)
        if feature_names is not None and len(feature_names) != n_features:
            raise ValueError(
                f"`feature_names` must have one name per feature group ({n_features}); got "
                f"{len(feature_names)}."
            )
        parts = partition_examples(layout.presence)
        sizes = {int(p.columns.shape[0]) for p in parts}
        too_small = any((_decoder_budget(method, n, n_samples) or 1) < 1 for n in sizes)
        if len(parts) > 1 or too_small:
            for n_part in sorted({int(p.columns.shape[0]) for p in parts}, reverse=True):
                self._check_budget(method, n_part, n_samples, max_order, generator, decoder_options)
        _warn_if_training(self.forward_func)

        state = generator.get_state()
        forwards = [
            self._masked_forward(
                part,
                inputs_t,
                baselines_t,
                layout.group_maps,
                target,
                args,
                batch,
                n_features,
                perturbations_per_eval,
            )
            for part in parts
        ]
        progress = None
        if show_progress:
            planned = [
                planned_evaluations(
                    method, int(p.columns.shape[0]), n_samples, max_order, decoder_options
                )
                for p in parts
            ]
            total = None if None in planned else sum(planned)  # type: ignore[arg-type]
            progress = Progress(f"{self.get_name()} attribution", total)
            for fwd in forwards:
                fwd.limit_rows_for_progress()
        out_shape: tuple[int, ...] | None = None
        pieces: list[tuple[Tensor, Tensor, int, Tensor]] = []
        ends: list[tuple[Tensor, Tensor, Tensor]] = []
        stats = {"n_forward_calls": 0, "n_forward_rows": 0, "forward_seconds": 0.0}
        n_evaluations = 0
        decoder_info: list[Any] = [None] * batch
        first_state: Tensor | None = None
        stores: list[EvaluationStore] = []
        try:
            for part, fwd in zip(parts, forwards):
                store = None
                if cache is not None:
                    key = fingerprint(
                        "SpectralInteraction", inputs_t, baselines_t, feature_mask, target, args,
                        method, n_samples, max_order, state, decoder_options, self.forward_func,
                        part.members, part.columns,
                    )  # fmt: skip
                    n_part = int(part.columns.shape[0])
                    store = on_every_rank(
                        group,
                        lambda key=key, n=n_part: EvaluationStore(cache, key, n),
                        f"opening cache {cache!r}",
                    )
                    stores.append(store)
                # with a store, hand the model one forward batch at a time, so that every
                # completed batch is on disk before the next one starts
                # with a progress bar too: it then moves with every forward call
                shared = Evaluator(
                    fwd, part.columns.shape[0], process_group=group, store=store,
                    nonfinite=nonfinite, progress=progress,
                    batch_size=fwd.chunk if store is not None or progress is not None else None,
                )  # fmt: skip
                n_part = int(part.columns.shape[0])
                probes = torch.stack(
                    [torch.ones(n_part, dtype=torch.bool), torch.zeros(n_part, dtype=torch.bool)]
                )
                probed = [False]

                def column(
                    b: int,
                    shared: Evaluator = shared,
                    probes: Tensor = probes,
                    probed: list[bool] = probed,
                ) -> Callable[[Tensor], Tensor]:
                    def value_function(masks: Tensor) -> Tensor:
                        if not probed[0]:
                            shared(probes)  # small first call: checks the model and target
                            probed[0] = True
                        return shared(masks)[:, b]

                    return value_function

                budget = _decoder_budget(method, n_part, n_samples)
                for b, example in enumerate(part.members.tolist()):
                    g = torch.Generator(device=generator.device)
                    g.set_state(state)
                    evaluator = Evaluator(
                        column(b), n_part, n_samples=budget, nonfinite=nonfinite,
                        progress=None if progress is None else progress.phases(),
                    )
                    order = None if max_order is None else min(max_order, n_part)
                    try:
                        spec, info = decode(
                            method,
                            evaluator,
                            n_part,
                            n_samples=budget,
                            max_order=order,
                            generator=g,
                            index=index,
                            **decoder_options,
                        )
                    except BudgetTooSmallError as err:
                        if n_samples is None:
                            raise
                        raise _budget_error(
                            err, method, n_part, n_samples, decoder_options
                        ) from err
                    if first_state is None:
                        first_state = g.get_state()
                    decoder_info[example] = info
                    spec = spec.prune(atol=0.0)
                    pieces.append((spec.indices, spec.coefficients, example, part.columns))
                values = shared(probes)
                out_shape = tuple(values.shape[2:])
                ends.append((part.members, values[0], values[1]))
                n_evaluations += shared.n_evaluations
                stats["n_forward_calls"] += fwd.n_calls
                stats["n_forward_rows"] += fwd.n_rows
                stats["forward_seconds"] += fwd.forward_seconds
                stats["perturbations_per_eval"] = fwd.chunk
            if progress is not None:
                progress.finish()
        finally:
            if progress is not None:
                progress.close()
            for store in stores:
                store.close()
        if first_state is not None:
            generator.set_state(first_state)
        assert out_shape is not None
        spectrum = _merge(pieces, batch, out_shape, n_features)
        full_value = torch.zeros(batch, *out_shape, dtype=torch.float64)
        empty_value = torch.zeros_like(full_value)
        for members, f_full, f_empty in ends:
            full_value[members] = f_full
            empty_value[members] = f_empty
        ones = torch.ones(1, n_features, dtype=torch.bool)
        learned = spectrum.evaluate(ones)[0] - spectrum.coefficients.sum(dim=0)
        info: dict[str, Any] = {
            "decoder_info": decoder_info,
            "n_background": n_background,
            **stats,
            "inputs_value": full_value,
            "baselines_value": empty_value,
            "convergence_delta": learned - (full_value - empty_value),
            "input_layout": input_layout(
                layout.group_maps, [tuple(x.shape) for x in inputs_t], is_tuple, inputs_t[0].device,
                [x.dtype for x in inputs_t],
            ),
        }
        return AttributionInteractions(
            spectrum,
            index=index,
            max_order=max_order,
            n_evaluations=n_evaluations,
            feature_names=feature_names,
            feature_ids=layout.feature_ids.tolist(),
            method=method,
            info=info,
        )

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_budget(
        method: str,
        n_features: int,
        n_samples: int | None,
        max_order: int | None,
        generator: torch.Generator,
        options: dict[str, Any],
    ) -> None:
        """Runs the decoder's own budget validation without evaluating anything."""
        if method == "exhaustive":
            check_exhaustive(n_features, n_samples)
            return
        budget = _decoder_budget(method, n_features, n_samples)
        g = torch.Generator(device=generator.device)
        g.set_state(generator.get_state())
        order = None if max_order is None else min(max_order, n_features)
        trial = None if budget is None else max(budget, 1)
        try:
            decode(
                method,
                _DryRunEvaluator(lambda m: m, n_features, n_samples=trial),
                n_features,
                n_samples=trial,
                max_order=order,
                generator=g,
                **options,
            )
        except _DryRun:
            pass
        except BudgetTooSmallError as err:
            assert n_samples is not None
            raise _budget_error(err, method, n_features, n_samples, options) from err
        if budget is not None and budget < 1:
            raise BudgetTooSmallError(
                f"method={method!r} needs n_samples >= {_N_PROBES + 1}: SpectralInteraction "
                f"evaluates the all-kept and all-removed masks besides the decoder's; got "
                f"{n_samples}.",
                _N_PROBES + 1,
            )

    def _masked_forward(
        self,
        part: Partition,
        inputs: tuple[Tensor, ...],
        baselines: tuple[Tensor, ...],
        group_maps: tuple[Tensor, ...],
        target: Any,
        args: tuple[Any, ...],
        batch: int,
        n_features: int,
        perturbations_per_eval: int | str,
    ) -> MaskedForward:
        members = part.members
        whole = members.shape[0] == batch
        n_part = int(part.columns.shape[0])
        lut = torch.full((n_features + 1,), -1, dtype=torch.long)
        lut[part.columns] = torch.arange(n_part)
        lut[n_features] = n_part  # never a feature: always kept
        sub_inputs, sub_bases, sub_maps = [], [], []
        for x, base, gmap in zip(inputs, baselines, group_maps):
            idx = members.to(x.device)
            sub_inputs.append(x if whole else x[idx])
            sub_bases.append(base if whole or base.shape[1] == 1 else base[:, idx])
            local = lut.to(gmap.device)[gmap]
            sub_maps.append(local if whole or local.shape[0] == 1 else local[idx])
        if not whole:
            target = select_examples(target, members, batch)
            args = tuple(select_examples(a, members, batch) for a in args)
        return MaskedForward(
            self.forward_func,
            tuple(sub_inputs),
            tuple(sub_bases),
            tuple(sub_maps),
            int(part.columns.shape[0]),
            target,
            args,
            perturbations_per_eval,
        )


def _first_order_attribute(
    self: SpectralInteraction, inputs: Any, *args: Any, **kwargs: Any
) -> Any:
    """What Captum's wrappers call (``NoiseTunnel`` reaches ``attribute.__wrapped__``).

    Captum wrappers average attribution tensors, so they get :meth:`attribute`'s Shapley values
    in Captum's layout (``first_order("SV")``, the inputs' dtype), with the convergence delta
    when they ask for it: ``NoiseTunnel(SpectralInteraction(model))`` gives SmoothGrad-style
    averaged Shapley values.
    """
    with_delta = bool(kwargs.pop("return_convergence_delta", False))
    result = self.attribute(inputs, *args, **kwargs)
    attributions = result.first_order("SV")
    return (attributions, result.convergence_delta) if with_delta else attributions


# Captum's NoiseTunnel calls `attribution_method.attribute.__wrapped__(self, ...)` (it expects
# Captum's usage-logging decorator); the signature stays attribute()'s own for help() and IDEs.
SpectralInteraction.attribute.__signature__ = inspect.signature(  # type: ignore[attr-defined]
    SpectralInteraction.attribute
)
SpectralInteraction.attribute.__wrapped__ = _first_order_attribute  # type: ignore[attr-defined]


def _merge(
    pieces: list[tuple[Tensor, Tensor, int, Tensor]],
    batch: int,
    out_shape: tuple[int, ...],
    n_features: int,
) -> SparseSpectrum:
    """One spectrum ``[s, B, *o]`` over the union of the examples' supports."""
    width = max((p[0].shape[1] for p in pieces), default=0)
    all_idx, all_coef = [], []
    for idx, coef, example, columns in pieces:
        mapped = torch.where(idx >= 0, columns[idx.clamp(min=0)], idx)
        pad = torch.full((idx.shape[0], width - idx.shape[1]), -1, dtype=torch.long)
        all_idx.append(torch.cat([mapped, pad], dim=1))
        full = torch.zeros(coef.shape[0], batch, *out_shape, dtype=coef.dtype)
        full[:, example] = coef
        all_coef.append(full)
    if not all_idx:
        return SparseSpectrum.zeros(n_features, (batch, *out_shape))
    return SparseSpectrum(torch.cat(all_idx), torch.cat(all_coef), n_features).coalesce()
