"""Samplers for the forecasters' loaders, sharded across data-parallel ranks by ssmcast itself.

Under DDP (a ``torch.distributed`` process group of ``W`` ranks, however launched: Lightning's own
re-launch, ``torchrun``, SLURM's ``srun``) rank ``r`` takes windows ``r, r + W, r + 2W, ...`` of the epoch's
order, padded at the end with the order's first windows so every rank runs the same number of batches (as
torch's ``DistributedSampler`` does). So with a per-rank ``batch_size`` of ``b``, step ``k`` of a DDP fit sees
exactly the windows of step ``k`` of one process with ``batch_size = W * b``, and DDP's gradient, the mean of the
ranks' mean losses, is that process's gradient: the documented single-process equivalent of an ``N``-node,
``D``-device fit is one process with ``N * D`` times the batch size (up to float rounding, and except the last
partial batch of an epoch, which the padding repeats windows into).
"""

from __future__ import annotations

import math

import numpy as np
import torch

_BLOCK = 65536


def _world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _shard(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s share of ``order``: every ``world``-th element from ``rank``, padded from the front."""
    if world == 1:
        return order
    total = math.ceil(len(order) / world) * world
    if total > len(order):
        order = np.concatenate([order, np.resize(order, total - len(order))])
    return order[rank:total:world]


def _blocks(order: np.ndarray):
    for start in range(0, len(order), _BLOCK):
        yield from order[start : start + _BLOCK].tolist()


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A shuffle that depends only on ``(seed, epoch)``, so a fit resumed from a checkpoint sees exactly the
    batches the uninterrupted fit would have seen (Lightning calls ``set_epoch`` each epoch); under DDP each
    rank's share of it (see the module docstring)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        # the permutation as an array, handed out a block at a time: a Python list of every index cost ~36 bytes
        # a window (1.5 GB at 40 M windows, issue #36) even when an epoch is capped at a few hundred batches
        # (int32 indices shuffled in place when they fit: the same permutation as permutation(n), without its
        # int64 array, copy and cast: a quarter of the memory, 51 MB for a 100k-series fit's 13 M windows)
        order = np.arange(self.n, dtype=np.int32 if self.n < 2**31 else np.int64)
        np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        yield from _blocks(_shard(order, *_world()))

    def __len__(self) -> int:
        return math.ceil(self.n / _world()[1])


class ShardSampler(torch.utils.data.Sampler):
    """The windows in order (validation); under DDP each rank's share, padded like ``EpochShuffleSampler``."""

    def __init__(self, n: int):
        self.n = n

    def __iter__(self):
        yield from _blocks(_shard(np.arange(self.n, dtype=np.int64), *_world()))

    def __len__(self) -> int:
        return math.ceil(self.n / _world()[1])
