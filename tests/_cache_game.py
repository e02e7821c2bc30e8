"""A value function shared by the cache tests and their subprocess (same code, same key)."""

import os
import sys
import time

import torch

CALLS: list[int] = []


def game(masks: torch.Tensor) -> torch.Tensor:
    CALLS.append(masks.shape[0])
    time.sleep(float(os.environ.get("TORCHSPEX_TEST_SLEEP", "0")))
    x = masks.double()
    return 1.5 * x[:, 0] * x[:, 1] - x[:, 2] + 0.25 * x[:, 3] * x[:, 4] * x[:, 5] + x.sum(1) ** 2


if __name__ == "__main__":
    import torchspex

    torchspex.explain(game, 7, method="exhaustive", batch_size=8, cache=sys.argv[1])
