"""The ``backend=`` switch of the scans, and the autograd glue shared by their fused kernels.

``backend`` is one of

* ``"torch"``: the plain PyTorch reference (any device), kept as the reference and the fallback;
* ``"numba"``: fused CPU kernels (``*_numba.py``), compiled on first use and cached on disk;
* ``"triton"``: fused GPU kernels (``*_triton.py``) for CUDA tensors; on the CPU only under Triton's
  interpreter (``TRITON_INTERPRET=1``), which is how the tests check them without a GPU;
* ``"mamba_ssm"``: the optional ``mamba_ssm`` CUDA/Triton kernels, when that package is installed
  (``"cuda"`` is kept as an alias of it);
* ``"auto"``: the fastest available for the tensor's device: on the CPU numba, else torch; on CUDA
  mamba_ssm (when installed and the call is one it supports), else Triton, else torch.

Nothing here imports numba or Triton: :func:`available` asks the import system whether they are there, and
the kernel modules are imported on first use, so ``import ssmcast`` stays fast.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os

import torch

BACKENDS = ("auto", "torch", "numba", "triton", "mamba_ssm")
_ALIASES = {"cuda": "mamba_ssm"}


@functools.cache
def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # pragma: no cover - a broken install
        return False


def triton_interpreted() -> bool:
    """True when Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available(backend: str, device: torch.device | str = "cpu") -> bool:
    """Whether ``backend`` can run tensors on ``device`` here (mamba_ssm: whether the package is installed)."""
    device = torch.device(device)
    if backend == "torch":
        return True
    if backend == "numba":
        return device.type == "cpu" and _installed("numba")
    if backend == "triton":
        return _installed("triton") and (device.type == "cuda" or (device.type == "cpu" and triton_interpreted()))
    if backend in ("mamba_ssm", "cuda"):
        return device.type == "cuda" and _installed("mamba_ssm")
    return False


def check_backend(backend) -> str:
    """``backend`` validated, aliases resolved; a clear error names the valid ones."""
    if not isinstance(backend, str) or _ALIASES.get(backend, backend) not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}")
    return _ALIASES.get(backend, backend)


def resolve(backend: str, device: torch.device, op: str, mamba_ssm_ok: bool = False) -> str:
    """The concrete backend that runs ``op`` on ``device``.

    ``mamba_ssm_ok``: the mamba_ssm kernel is importable and supports this call (``auto`` prefers it on CUDA).
    An explicit backend that cannot run here is an error naming why, never a silent fallback.
    """
    backend = check_backend(backend)
    if backend == "auto":
        if device.type == "cuda":
            if mamba_ssm_ok:
                return "mamba_ssm"
            return "triton" if available("triton", device) else "torch"
        return "numba" if available("numba", device) else "torch"
    if backend == "numba" and not available("numba", device):
        if device.type != "cpu":
            raise ValueError(f"{op}: backend='numba' runs on the CPU; the tensors are on {device} "
                             "(use backend='triton' or 'auto' for CUDA tensors)")  # fmt: skip
        raise ValueError(f"{op}: backend='numba' needs the numba package (pip install numba)")
    if backend == "triton" and not available("triton", device):
        if not _installed("triton"):
            raise ValueError(f"{op}: backend='triton' needs the triton package (it comes with PyPI's CUDA torch)")
        raise ValueError(f"{op}: backend='triton' needs CUDA tensors (the tensors are on {device}); on the CPU "
                         "its kernels run only in Triton's interpreter, with TRITON_INTERPRET=1")  # fmt: skip
    return backend


def kernels(backend: str, op: str):
    """The kernel module of ``op`` (``"selective_scan"`` or ``"s5"``) for ``backend`` (``numba``/``triton``)."""
    return importlib.import_module(f"ssmcast.ops.{op}_{backend}")


class FusedSelectiveScan(torch.autograd.Function):
    """The selective scan on canonical inputs by a fused kernel module (``selective_scan_numba`` or
    ``selective_scan_triton``), which provides ``forward`` and ``backward`` over these layouts:

    ``u, z (b, D, L)``; ``delta (b, Dd, L)`` (Dd divides D; channel d uses ``delta[:, d // (D/Dd)]``);
    ``A (D, NA)`` with NA 1 or N; ``B, C (b, G, L, N)`` input-dependent or ``(1, D, 1, N)`` time-invariant;
    ``Dskip (D,)``, ``bias (Dd,)``, ``h0 (b, D, N)`` or None. Returns ``y (b, D, L)`` and the last state
    ``(b, D, N)``. The forward keeps the state entering every chunk of the kernel's ``CHUNK`` steps; the
    backward recomputes inside chunks, so memory stays far below the ``(b, D, L, N)`` of all states.
    """

    @staticmethod
    def forward(ctx, module, u, delta, A, B, C, Dskip, z, bias, h0, softplus: bool):
        save = any(ctx.needs_input_grad)
        y, last, ckpt = module.forward(u, delta, A, B, C, Dskip, z, bias, h0, softplus, save)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, Dskip, z, bias, h0, ckpt)
            ctx.module, ctx.softplus = module, softplus
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy, glast):
        u, delta, A, B, C, Dskip, z, bias, h0, ckpt = ctx.saved_tensors
        if gy is None:
            gy = torch.zeros_like(u)
        gu, gdt, gA, gB, gC, gD, gz, gh0 = ctx.module.backward(
            u, delta, A, B, C, Dskip, z, bias, h0, ctx.softplus, ckpt, gy.contiguous(),
            None if glast is None else glast.contiguous(),
        )  # fmt: skip
        b, D, L = u.shape
        Dd = delta.shape[1]
        gdelta = gdt if Dd == D else gdt.view(b, Dd, D // Dd, L).sum(2)  # channels sharing one step
        need = ctx.needs_input_grad
        return (
            None, gu if need[1] else None, gdelta if need[2] else None, gA if need[3] else None,
            gB if need[4] else None, gC if need[5] else None, gD if need[6] else None,
            gz if need[7] else None, gdelta.sum((0, 2)) if need[8] else None, gh0 if need[9] else None, None,
        )  # fmt: skip


def fused_selective_scan(backend: str, u, delta, A, B, C, Dskip, z, bias, h0, softplus: bool):
    """:class:`FusedSelectiveScan` by ``backend`` (``"numba"`` or ``"triton"``): ``(y, last state)``."""
    return FusedSelectiveScan.apply(kernels(backend, "selective_scan"), u, delta, A, B, C, Dskip, z, bias, h0,
                                    softplus)  # fmt: skip
