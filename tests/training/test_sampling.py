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
