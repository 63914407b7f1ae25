"""Which data-parallel rank this process is, read from the launcher's environment (no torch, no process group).

A sharded fit (``ssmcast.data.shards``) must know its rank and the world size *before* it reads any data, that is
before Lightning creates the process group inside ``Trainer.fit``. The launchers say it in the environment:

- ``torchrun``: ``RANK`` (global), ``WORLD_SIZE``, ``LOCAL_RANK``, ``GROUP_RANK`` (the node);
- SLURM's ``srun``: ``SLURM_PROCID`` (global), ``SLURM_NTASKS``;
- Lightning's own re-launch (``strategy="ddp"`` from a plain ``python`` run): the processes it starts get
  ``LOCAL_RANK``, ``NODE_RANK`` and ``WORLD_SIZE``; the process that starts them has none of these while it reads
  its data (it starts the others inside ``Trainer.fit``), so it cannot shard: a sharded fit checks, once the group
  exists, that every rank read the shard of the group's world size, and says so when not.
"""

from __future__ import annotations

import os

#: the variables that name a process's rank (any of them non-zero: not global rank 0)
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def _int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else None


def is_worker() -> bool:
    """A DDP process of global rank > 0 (any launcher above): it trains; evaluation, outputs and tracking are
    rank 0's."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in RANK_VARIABLES)


def env_rank_world() -> tuple[int, int]:
    """``(global rank, world size)`` from the environment; ``(0, 1)`` without a launcher's variables.

    Raises ``ValueError`` when the variables cannot name the global rank (a node rank > 0 without ``RANK`` or
    ``SLURM_PROCID``: the global rank needs the processes per node, which the environment does not give)."""
    world = _int("WORLD_SIZE") or _int("SLURM_NTASKS") or 1
    rank = _int("RANK")
    if rank is None:
        rank = _int("SLURM_PROCID")
    if rank is None:
        node, local = _int("NODE_RANK") or _int("GROUP_RANK") or 0, _int("LOCAL_RANK") or 0
        if node:
            raise ValueError(
                f"cannot tell this process's global rank from its environment (NODE_RANK={node}, LOCAL_RANK="
                f"{local}, no RANK or SLURM_PROCID): start a sharded multi-node fit with torchrun or srun"
            )
        rank = local
    if not 0 <= rank < world:
        raise ValueError(f"the environment gives rank {rank} of a world of {world} processes (RANK/SLURM_PROCID, "
                         "WORLD_SIZE/SLURM_NTASKS): the rank must be below the world size")
    return rank, world
