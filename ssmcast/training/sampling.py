"""Samplers for the forecasters' loaders, sharded across data-parallel ranks by ssmcast itself.

Under DDP (a ``torch.distributed`` process group of ``W`` ranks, however launched: Lightning's own
re-launch, ``torchrun``, SLURM's ``srun``) rank ``r`` takes windows ``r, r + W, r + 2W, ...`` of the epoch's
order, padded at the end with the order's first windows so every rank runs the same number of batches (as
torch's ``DistributedSampler`` does). So with a per-rank ``batch_size`` of ``b``, step ``k`` of a DDP fit sees
exactly the windows of step ``k`` of one process with ``batch_size = W * b``, and DDP's gradient, the mean of the
ranks' mean losses, is that process's gradient: the documented single-process equivalent of an ``N``-node,
``D``-device fit is one process with ``N * D`` times the batch size (up to float rounding, and except the last
partial batch of an epoch, which the padding repeats windows into).

A *sharded* fit (``fit`` from a partitioned Parquet dataset under DDP, ``ssmcast.data.shards``) is different: each
rank holds the windows of its own files only, so there is nothing to shard again. Rank ``r``'s epoch is a
permutation of its own ``n_r`` windows seeded by ``(seed, epoch, r)``, cycled to the most windows any rank holds
(:func:`rank_epoch_order`; ``RankShuffleSampler``, and ``RankSampler`` for validation, in order): every rank runs
the same number of batches, which DDP needs (a rank that stops early leaves the others waiting in the
all-reduce), and the ranks agree on that number through the process group once it exists
(``ssmcast.training.trainer.ShardAgreement``). With a per-rank batch of ``b``, step ``k`` of the fit is then the
step of one process whose batch is the ranks' step-``k`` batches put together (DDP's gradient is the mean of the
ranks' means over batches of equal size), each built from :func:`rank_epoch_order`: the documented
single-process equivalent of a sharded fit.
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


def rank_epoch_order(n: int, total: int, seed: int, epoch: int, rank: int) -> np.ndarray:
    """Rank ``rank``'s window order in ``epoch`` of a sharded fit: its ``n`` windows shuffled by ``(seed, epoch,
    rank)``, cycled to ``total`` (the most windows a rank holds; ``total >= n``)."""
    if total < n:
        raise ValueError(f"total={total} is below the rank's {n} windows")
    order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    np.random.default_rng([seed, epoch, rank]).shuffle(order)
    return np.resize(order, total) if total > n else order


class RankShuffleSampler(torch.utils.data.Sampler):
    """A sharded fit's training windows on one rank (:func:`rank_epoch_order`); ``total`` is agreed by the ranks
    once the process group exists (:class:`ShardAgreement`), until then the rank's own count."""

    def __init__(self, n: int, seed: int, rank: int):
        self.n, self.seed, self.rank, self.epoch, self.total = n, seed, rank, 0, n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        yield from _blocks(rank_epoch_order(self.n, self.total, self.seed, self.epoch, self.rank))

    def __len__(self) -> int:
        return self.total


class RankSampler(torch.utils.data.Sampler):
    """A sharded fit's validation windows on one rank, in order, cycled to the agreed ``total`` (the padding
    repeats windows, as ``ShardSampler``'s does: every rank's mean counts equally in the synchronised loss)."""

    def __init__(self, n: int):
        self.n, self.total = n, n

    def __iter__(self):
        yield from _blocks(np.resize(np.arange(self.n, dtype=np.int64), self.total))

    def __len__(self) -> int:
        return self.total
