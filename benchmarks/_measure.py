"""What bench_selective_scan.py and bench_complexity.py share: a measurement run in a fresh Python process, and
the peak memory of one call in it.

Not a script. The benchmarks import it by name (``from _measure import ...``): ``python benchmarks/<script>.py``
puts this folder first on ``sys.path``, and a script loaded by its path (the tests) adds it itself.

Peak memory (CPU): the kernel's resident-set high-water mark is reset (``/proc/self/clear_refs``, Linux >= 4.0)
and the resident set read (``VmRSS``) just before the call; the figure is ``VmHWM`` after it minus that. Where
``clear_refs`` is refused it is ``ru_maxrss`` (the high-water mark since the process started) minus the same:
an upper bound. CUDA: the allocator's peak above what was allocated before the call.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import torch

EXACT = "VmHWM after clear_refs"
UPPER_BOUND = "ru_maxrss (upper bound)"
ALLOCATOR = "max_memory_allocated"


def status_bytes(field: str) -> int:
    """A size field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``VmSize``, ...) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_of(fn, device) -> tuple[int, str]:
    """Run ``fn()`` once on ``device``: the bytes of memory it added at its peak (at least 0) and how they were
    measured (:data:`EXACT`, :data:`UPPER_BOUND` or, on CUDA, :data:`ALLOCATOR`; see the module's docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - before), ALLOCATOR
    before = status_bytes("VmRSS")
    exact = reset_peak_rss()
    fn()
    peak = status_bytes("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(0, peak - before), EXACT if exact else UPPER_BOUND


def run_json_child(script: str, args: list[str], timeout: float | None = None, env: dict | None = None,
                   check: bool = False) -> dict:  # fmt: skip
    """Run ``python script *args`` in a fresh interpreter: the JSON object on the last line of its stdout.

    A child that fails: with ``check``, subprocess's exception (``CalledProcessError``, ``TimeoutExpired``);
    without, ``{"error": ...}`` (the last line of its stderr, and the signal that killed it), or for one past
    ``timeout`` (killed) ``{"error": "timeout: ...", "timeout": True}``."""
    try:
        out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env,
                             timeout=timeout, check=check)  # fmt: skip
    except subprocess.TimeoutExpired:
        if check:
            raise
        return {"error": f"timeout: killed after {timeout:.0f} s", "timeout": True}
    if out.returncode:
        lines = (out.stderr or "").strip().splitlines()
        text = lines[-1] if lines else f"exit status {out.returncode}"
        if out.returncode < 0:
            text = f"killed by signal {-out.returncode}; {text}"
        return {"error": text}
    return json.loads(out.stdout.strip().splitlines()[-1])
