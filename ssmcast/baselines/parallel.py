"""Where the classical baselines' per-series work runs: local processes (joblib) or a Dask cluster.

The baselines cut a panel into batches of series (:func:`batches`) and run one task a batch. ``backend="local"``
runs the tasks with joblib over ``n_jobs`` local workers; ``backend="dask"`` submits them to the current
``dask.distributed`` client (the one the user created with ``Client(address)`` or ``Client(LocalCluster())``;
the CLI creates one from ``+cluster.address=tcp://...``), so a panel's series spread over every worker of the
cluster. In both, results come back in task order, so the forecasts are those of the local path, series for
series. A task lost with its worker (a worker killed or its machine gone) is run again by the Dask scheduler on
another worker (up to its ``allowed-failures``, 3 by default); a task's result is gathered once, so no series is
lost or counted twice. ``distributed`` is optional: ``pip install 'ssmcast[dask]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from tqdm import tqdm

__all__ = ["BACKENDS", "check_backend", "dask_client", "batches", "run_tasks"]

BACKENDS = ("local", "dask")


def check_backend(backend) -> str:
    """``backend`` checked: ``"local"`` or ``"dask"`` (a ``ValueError`` naming the choices otherwise)."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    return backend


def dask_client():
    """The current ``dask.distributed`` client, or a clear error saying how to get one."""
    try:
        from distributed import get_client
    except ImportError:
        raise ImportError(
            "backend='dask' needs dask.distributed: pip install 'ssmcast[dask]' (or pip install distributed)"
        ) from None
    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "backend='dask' runs on the current dask.distributed client and there is none: create one first, "
            "e.g. `from distributed import Client; client = Client('tcp://scheduler:8786')` (or "
            "Client(LocalCluster()) on this machine); the CLI takes +cluster.address=tcp://..."
        ) from None


def workers(backend: str, n_jobs) -> int:
    """How many tasks run at once: joblib's effective ``n_jobs``, or the cluster's worker threads."""
    if backend == "dask":
        return max(1, sum(dask_client().nthreads().values()))
    from joblib import effective_n_jobs

    return max(1, effective_n_jobs(n_jobs))


def batches(items: list, n_workers: int) -> list[list]:
    """``items`` cut into about four batches a worker, at most 256 items each (balance against overhead)."""
    size = max(1, min(256, -(-len(items) // (4 * n_workers))))
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_tasks(fn: Callable, arguments: Iterable[tuple], total: int, *, backend: str = "local", n_jobs=1,
              desc: str = "", verbose: bool = False) -> Iterator:
    """``fn(*args)`` for every ``args`` of ``arguments``, yielded in that order, on ``backend``."""
    if backend == "dask":
        client = dask_client()
        futures = [client.submit(fn, *args, pure=False) for args in arguments]  # pure=False: never deduplicated
        return tqdm(_in_order(client, futures), total=total, desc=desc, disable=not verbose, leave=False)
    from joblib import Parallel, delayed

    runner = Parallel(n_jobs=n_jobs, return_as="generator")
    return tqdm(runner(delayed(fn)(*args) for args in arguments), total=total, desc=desc, disable=not verbose,
                leave=False)


def _in_order(client, futures: list) -> Iterator:
    """Each future's result in submission order; on an error (or when the caller stops early) the futures not
    yet gathered are cancelled, so a failed run leaves nothing running on the cluster."""
    done = 0
    try:
        for future in futures:
            yield future.result()
            done += 1
    finally:
        if done < len(futures):
            client.cancel(futures[done:])
