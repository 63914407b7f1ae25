"""Samplers for the forecasters' training loaders."""

from __future__ import annotations

import numpy as np
import torch


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A shuffle that depends only on ``(seed, epoch)``, so a fit resumed from a checkpoint sees exactly the
    batches the uninterrupted fit would have seen (Lightning calls ``set_epoch`` each epoch)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n
