"""Samplers for the forecasters' training loaders."""

from __future__ import annotations

import numpy as np
import torch

_BLOCK = 65536


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A shuffle that depends only on ``(seed, epoch)``, so a fit resumed from a checkpoint sees exactly the
    batches the uninterrupted fit would have seen (Lightning calls ``set_epoch`` each epoch)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        # the permutation as an array, handed out a block at a time: a Python list of every index cost ~36 bytes
        # a window (1.5 GB at 40 M windows, issue #36) even when an epoch is capped at a few hundred batches
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        if self.n < 2**31:
            order = order.astype(np.int32)
        for start in range(0, self.n, _BLOCK):
            yield from order[start : start + _BLOCK].tolist()

    def __len__(self) -> int:
        return self.n
