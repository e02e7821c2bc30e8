"""Functional entry point for plain value functions (the spectralexplain-style user)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import torch

from torchspex._pipeline import Problem, Run
from torchspex.cache import fingerprint
from torchspex.decoders.base import Evaluator, ValueFunction
from torchspex.distributed import check_executor, resolve_process_group
from torchspex.interactions import Interactions

__all__ = ["explain"]


def check_n_features(n_features: int) -> int:
    """Validates a feature count."""
    if isinstance(n_features, bool) or not isinstance(n_features, int):
        raise TypeError(f"`n_features` must be an int; got {type(n_features).__name__}.")
    if n_features < 1:
        raise ValueError(f"`n_features` must be >= 1; got {n_features}.")
    return n_features


def check_batch_size(batch_size: int | None, name: str = "batch_size") -> int | None:
    """``None`` or a positive int (masks per value-function call)."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        kind = type(batch_size).__name__
        raise TypeError(f"`{name}` must be a positive int or None; got {kind}.")
    if batch_size < 1:
        raise ValueError(
            f"`{name}` must be a positive int (masks per call) or None (as many as the method "
            f"asks for at once); got {batch_size}."
        )
    return batch_size


def check_feature_labels(
    feature_names: Sequence[str] | None,
    feature_ids: Sequence[Hashable] | None,
    n_features: int,
    what: str = "feature",
) -> None:
    """One name and one distinct id per feature, checked before any evaluation."""
    for name, labels in (("feature_names", feature_names), ("feature_ids", feature_ids)):
        if labels is None:
            continue
        if isinstance(labels, str) or not hasattr(labels, "__len__"):
            raise TypeError(
                f"`{name}` must be a sequence with one entry per {what}; got "
                f"{type(labels).__name__}."
            )
        if len(labels) != n_features:
            raise ValueError(
                f"`{name}` must have one entry per {what} ({n_features}); got {len(labels)}."
            )
    if feature_ids is not None and len(set(feature_ids)) != len(feature_ids):
        raise ValueError(f"`feature_ids` must be distinct; got {list(feature_ids)!r}.")


def explain(
    value_function: ValueFunction,
    n_features: int,
    *,
    method: str = "auto",
    n_samples: int | None = None,
    max_order: int | None = None,
    index: str = "k-SII",
    generator: torch.Generator | int | None = None,
    feature_names: Sequence[str] | None = None,
    feature_ids: Sequence[Hashable] | None = None,
    mask_format: str = "torch",
    batch_size: int | None = None,
    cache: str | os.PathLike | None = None,
    cache_key: Any = None,
    process_group: Any = None,
    executor: Any = None,
    nonfinite: str = "raise",
    show_progress: bool | str = False,
    **decoder_options: Any,
) -> Interactions:
    """Learns the sparse Fourier spectrum of a value function and returns its interactions.

    Args:
        value_function: ``masks -> values``; masks are ``bool [m, n_features]`` (True = feature
            kept; a torch tensor, or a NumPy array with ``mask_format="numpy"``); values are
            ``[m]`` or ``[m, n_outputs]``, torch or NumPy.
        n_features: number of features ``n``.
        method: ``"auto"`` (default: chooses the design and decoder from ``n``, the budget and
            the index, and records the choice and its reason in ``info["auto"]``; see
            :mod:`torchspex.decoders.auto`), ``"regression"`` (index-aware weighted regression
            on paired Shapley-kernel or uniform masks; :mod:`torchspex.decoders.regression`),
            ``"spex"`` (Kang et al., 2025), ``"proxyspex"`` (Butler et al., 2025) or
            ``"exhaustive"`` (all ``2^n`` masks, exact, ``n <= 20``). Every sampled method's
            result is exact at all-kept and all-removed (the two masks are part of the budget),
            so Shapley values add up to ``f(N) - f(∅)``.
        n_samples: the most value-function evaluations to spend (distinct masks).
        max_order: order cap of the interactions reported (and the decoder's target order).
        index: interaction index of the result (default ``"k-SII"``, see the README's table).
            The index also picks the design of ``method="auto"`` / ``"regression"``: the
            Shapley family (``"k-SII"``, ``"SV"``, ``"SII"``, ``"FSII"``, ...) samples
            coalitions by the Shapley kernel, so ``first_order("SV")`` and the pairs come from a
            fit made for them; the Banzhaf family (``"FBII"``, ``"BII"``, ``"BV"``,
            ``"Fourier"``, ``"Moebius"``) samples uniform masks. Reading an index of the other
            family from the result warns once.
        generator: ``torch.Generator`` or int seed; ``None`` means seed 0 (deterministic).
        feature_names: display labels.
        feature_ids: what to call the features in the result (e.g. group ids with gaps);
            default ``0 .. n_features - 1``.
        mask_format: ``"torch"`` or ``"numpy"``: what ``value_function`` receives.
        batch_size: most masks per ``value_function`` call (``None``: as many as the method
            asks for at once).
        cache: path of an evaluation store (SQLite). Every evaluated batch is appended to it as
            it completes; re-running the same call after an interruption evaluates only the
            masks still missing. See :mod:`torchspex.cache`.
        cache_key: anything that identifies what ``value_function`` computes (e.g. a model
            version), mixed into the problem's fingerprint. The fingerprint already covers
            ``n_features``, the method and its settings, the generator state and the value
            function's code; one stored value is re-checked on resume.
        process_group: share the forward passes among the ranks of a ``torch.distributed``
            process group. ``None`` (default): the default group whenever torch.distributed is
            initialized (e.g. under ``torchrun``); ``False``: never (each rank explains alone).
            Every rank must call ``explain`` with the same arguments and the same generator
            seed, so that every rank asks for the same masks: each round of new masks is then
            split into contiguous shards, each rank evaluates its shard with its own
            ``value_function`` (on its own device), the values are all-gathered in order, and
            every rank returns the same result, bit for bit. Ranks that ask for different masks
            raise ``ValueError``; a failure on one rank raises on every rank (see
            :mod:`torchspex.distributed`).
        executor: a ``concurrent.futures.Executor``-like object (``submit`` or ``map``: a
            thread or process pool, Dask's ``client.get_executor()``, a Ray pool) that runs
            ``value_function`` on the ``batch_size`` chunks of each round concurrently; results
            are identical to a serial run. Set ``batch_size`` so that a round has several chunks.
        nonfinite: ``"raise"`` (default): a NaN or inf value raises ``ValueError`` naming how
            many masks and one of them. ``"drop"`` (``method="proxyspex"`` only): those masks are
            left out of the fit, with a warning, and counted in ``info["n_dropped"]``.
        show_progress: ``True`` shows a tqdm bar over the masks evaluated (per ``batch_size``
            call), ``"fitting"`` while the decoder works; it ends at 100% (the total becomes
            the masks evaluated when fewer were needed than planned). A string shows the bar
            with that label. Off by default.
        **decoder_options: method-specific settings.

    Returns:
        :class:`~torchspex.Interactions` with the learned spectrum.

    Raises:
        ValueError: for an unknown method or index, a bad order or budget, a value function
            returning the wrong number of values or NaN/inf.
        TypeError: for arguments of the wrong type.

    Example:
        >>> f = lambda masks: 2.0 * masks[:, 0] * masks[:, 1] + masks[:, 2]
        >>> result = explain(f, 3, method="exhaustive", index="Moebius")
        >>> result.to_dict()
        {(2,): 1.0, (0, 1): 2.0}
    """
    n_features = check_n_features(n_features)
    problem = Problem.check(
        n_features, method=method, index=index, max_order=max_order, n_samples=n_samples,
        generator=generator, nonfinite=nonfinite, decoder_options=decoder_options,
    )  # fmt: skip
    group = resolve_process_group(process_group)
    executor = check_executor(executor)
    batch_size = check_batch_size(batch_size)
    check_feature_labels(feature_names, feature_ids, n_features)
    if executor is not None and batch_size is None:
        warnings.warn(
            "`executor` was given without `batch_size`, so each round of masks is one task and "
            "runs on one worker; set `batch_size` to spread a round over the executor.",
            stacklevel=2,
        )
    with Run() as run:
        store = None
        if cache is not None:
            key = fingerprint(
                "explain", n_features, problem.method, problem.n_samples, problem.max_order,
                problem.generator, decoder_options, mask_format, value_function, cache_key,
            )  # fmt: skip
            store = run.open_store(cache, key, n_features, group)
        if show_progress:
            label = show_progress if isinstance(show_progress, str) else "explain"
            run.show_progress(label, [problem.planned(n_features)])
        evaluator = Evaluator(
            value_function, n_features, n_samples=problem.n_samples, mask_format=mask_format,
            batch_size=batch_size, store=store, process_group=group, executor=executor,
            nonfinite=problem.nonfinite, progress=run.progress,
        )  # fmt: skip
        spectrum, info = problem.decode(evaluator, n_features)
    return problem.result(
        Interactions, spectrum.prune(atol=0.0), n_evaluations=evaluator.n_evaluations,
        feature_names=feature_names, feature_ids=feature_ids,
        info={**info, **_evaluation_counts(evaluator)},
    )  # fmt: skip


def _evaluation_counts(evaluator: Evaluator) -> dict[str, int]:
    """Where the values came from: the value function, the store, this rank (when shared)."""
    counts = {"n_model_evaluations": evaluator.n_model_evaluations, "n_cached": evaluator.n_cached}
    if evaluator.ranks is not None:
        counts["world_size"] = evaluator.ranks.world_size
        counts["n_local_evaluations"] = evaluator.n_local_evaluations
    return counts
