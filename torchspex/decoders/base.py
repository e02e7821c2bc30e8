"""The value-function seam shared by every decoder.

A *value function* maps masks ``bool [m, n_features]`` (True = feature kept) to values
``[m]`` or ``[m, *out]``. Decoders never call it directly: they go through an
:class:`Evaluator`, which checks every output, evaluates each distinct mask once, and counts
evaluations against the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["BudgetTooSmallError", "Evaluator", "ValueFunction"]

ValueFunction = Callable[[Tensor], Any]


class BudgetTooSmallError(ValueError):
    """``n_samples`` is below what the method needs; ``minimum`` says what would work."""

    def __init__(self, message: str, minimum: int) -> None:
        super().__init__(message)
        self.minimum = minimum


def _pack(masks: Tensor) -> np.ndarray:
    packed = np.packbits(masks.cpu().numpy().astype(np.uint8), axis=1)
    return packed.view(np.dtype((np.void, packed.shape[1]))).ravel()


class Evaluator:
    """Calls a value function on masks: checked outputs, distinct masks once, counted calls.

    Args:
        value_function: ``masks bool [m, n] -> values [m, *out]`` (torch or NumPy, any real
            dtype).
        n_features: number of features ``n``.
        n_samples: the most distinct masks that may be evaluated (``None``: no limit).
        mask_format: ``"torch"`` passes bool tensors, ``"numpy"`` passes bool arrays.
        batch_size: largest number of masks per call (``None``: all masks of a request at once).
    """

    def __init__(
        self,
        value_function: ValueFunction,
        n_features: int,
        n_samples: int | None = None,
        mask_format: str = "torch",
        batch_size: int | None = None,
    ) -> None:
        if not callable(value_function):
            raise TypeError(
                f"`value_function` must be callable; got {type(value_function).__name__}."
            )
        if mask_format not in ("torch", "numpy"):
            raise ValueError(
                f"`mask_format` must be one of ('torch', 'numpy'); got {mask_format!r}."
            )
        self.value_function = value_function
        self.n_features = n_features
        self.n_samples = n_samples
        self.mask_format = mask_format
        self.batch_size = batch_size
        self.n_evaluations = 0
        self.n_calls = 0
        self.out_shape: tuple[int, ...] | None = None
        self._seen: dict[bytes, int] = {}
        self._values: list[Tensor] = []
        self._masks: list[Tensor] = []

    @property
    def masks(self) -> Tensor:
        """Every distinct mask evaluated so far, ``bool [N, n]``."""
        if not self._masks:
            return torch.zeros(0, self.n_features, dtype=torch.bool)
        return torch.cat(self._masks)

    @property
    def values(self) -> Tensor:
        """Their values, ``float64 [N, *out]``."""
        if not self._values:
            return torch.zeros(0, *(self.out_shape or ()), dtype=torch.float64)
        return torch.cat(self._values)

    def _call(self, masks: Tensor) -> Tensor:
        arg: Any = masks.numpy() if self.mask_format == "numpy" else masks
        self.n_calls += 1
        out = self.value_function(arg)
        if isinstance(out, (list, tuple, float, int)):
            out = np.asarray(out)
        if isinstance(out, np.ndarray):
            if not np.issubdtype(out.dtype, np.number) or np.iscomplexobj(out):
                raise TypeError(
                    f"`value_function` must return real numbers; got an array of dtype {out.dtype}."
                )
            out = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float64))
        if not isinstance(out, Tensor):
            raise TypeError(
                "`value_function` must return a torch.Tensor or numpy.ndarray; got "
                f"{type(out).__name__}."
            )
        if out.is_complex() or out.dtype == torch.bool:
            raise TypeError(f"`value_function` must return real numbers; got dtype {out.dtype}.")
        out = out.detach().to("cpu", torch.float64)
        if out.dim() == 0 or out.shape[0] != masks.shape[0]:
            raise ValueError(
                f"`value_function` returned shape {tuple(out.shape)} for {masks.shape[0]} masks; "
                f"it must return one value per mask (shape [{masks.shape[0]}, ...])."
            )
        if self.out_shape is None:
            self.out_shape = tuple(out.shape[1:])
        elif tuple(out.shape[1:]) != self.out_shape:
            raise ValueError(
                f"`value_function` returned values of shape {tuple(out.shape[1:])} per mask after "
                f"returning {self.out_shape} before; it must be consistent."
            )
        return out

    def __call__(self, masks: Tensor) -> Tensor:
        """Values for ``masks bool [m, n]`` -> ``float64 [m, *out]``, evaluating new masks only."""
        masks = torch.as_tensor(masks).bool().cpu()
        if masks.dim() != 2 or masks.shape[1] != self.n_features:
            raise AssertionError(f"masks must be [m, {self.n_features}]; got {tuple(masks.shape)}")
        keys = _pack(masks)
        uniq_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        new = [i for i, key in enumerate(uniq_keys) if key.tobytes() not in self._seen]
        if new:
            new_rows = torch.from_numpy(first[new])
            new_masks = masks[new_rows]
            if self.n_samples is not None and self.n_evaluations + len(new) > self.n_samples:
                raise AssertionError(
                    f"decoder exceeded its budget: {self.n_evaluations + len(new)} > "
                    f"{self.n_samples}"
                )
            step = self.batch_size or new_masks.shape[0]
            chunks = [
                self._call(new_masks[i : i + step]) for i in range(0, new_masks.shape[0], step)
            ]
            new_values = torch.cat(chunks)
            bad = ~torch.isfinite(new_values.reshape(new_values.shape[0], -1)).all(dim=1)
            if bool(bad.any()):
                example = torch.nonzero(new_masks[bad][0]).squeeze(1).tolist()
                raise ValueError(
                    f"`value_function` returned NaN or inf for {int(bad.sum())} of "
                    f"{new_masks.shape[0]} masks (e.g. the mask keeping features {example}); "
                    "fix the model or value function so every mask has a finite value."
                )
            base = len(self._seen)
            for j, i in enumerate(new):
                self._seen[uniq_keys[i].tobytes()] = base + j
            self._masks.append(new_masks)
            self._values.append(new_values)
            self.n_evaluations += len(new)
        all_values = self.values
        pos = torch.tensor([self._seen[k.tobytes()] for k in uniq_keys], dtype=torch.long)
        return all_values[pos[torch.from_numpy(inverse.reshape(-1))]]
