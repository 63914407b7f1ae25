"""The training sampler: the same order as a plain permutation of ``(seed, epoch)``, without a Python list of
every window index (issue #36: 1.5 GB at 40 M windows, even for an epoch capped at a few hundred batches)."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from ssmcast.training.sampling import EpochShuffleSampler


@pytest.mark.parametrize("n", [0, 1, 7, 65536, 200_003])
def test_the_order_is_the_permutation_of_seed_and_epoch(n):
    sampler = EpochShuffleSampler(n, seed=3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        got = list(sampler)
        assert got == np.random.default_rng([3, epoch]).permutation(n).tolist()
        assert all(type(i) is int for i in got[:10]) and len(sampler) == n
    if n > 1:
        sampler.set_epoch(0)
        first = list(sampler)
        sampler.set_epoch(1)
        assert list(sampler) != first


def test_a_capped_epoch_does_not_hold_a_list_of_every_index():
    n = 4_000_000
    sampler = EpochShuffleSampler(n, seed=0)
    tracemalloc.start()
    try:
        head = list(itertools.islice(iter(sampler), 300 * 32))  # 300 batches of 32
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(head) == 9600
    assert peak < 60e6, peak  # the int64 permutation (32 MB) and one block; a list of every index was ~150 MB


@pytest.mark.parametrize("n, world", [(48, 2), (50, 3), (7, 4), (1, 2)])
def test_ranks_share_each_batch_of_the_single_process_order(n, world, monkeypatch):
    """Under DDP rank r takes every world-th window from r, padded from the front: batch k of the ranks put
    together is batch k of one process with world times the batch (the multi-node equivalence)."""
    from ssmcast.training import sampling
    from ssmcast.training.sampling import ShardSampler

    order = np.random.default_rng([5, 1]).permutation(n).tolist()
    padded = order + order[: -n % world or 0] if n % world else order
    shares, evals = [], []
    for rank in range(world):
        monkeypatch.setattr(sampling, "_world", lambda rank=rank: (rank, world))
        sampler = EpochShuffleSampler(n, seed=5)
        sampler.set_epoch(1)
        shares.append(list(sampler))
        evals.append(list(ShardSampler(n)))
        assert len(sampler) == len(shares[-1]) == len(evals[-1]) == -(-n // world)
    b = 2
    for k in range(-(-len(shares[0]) // b)):
        together = sorted(i for share in shares for i in share[k * b : (k + 1) * b])
        assert together == sorted(padded[k * b * world : (k + 1) * b * world])
    assert sorted(i for e in evals for i in e) == sorted(list(range(n)) + list(range(n))[: -n % world or 0])
    assert set(order) == {i for share in shares for i in share}  # every window seen, padding only repeats


def test_use_distributed_sampler_is_refused_by_name():
    from ssmcast.training.trainer import build_trainer

    with pytest.raises(ValueError, match="use_distributed_sampler"):
        build_trainer(max_epochs=1, accelerator="cpu", precision=None, verbose=False, checkpoint_dir=None,
                      scratch_dir=None, has_val=False, early_stopping_patience=None, gradient_clip_val=None,
                      trainer_kwargs={"use_distributed_sampler": True})
