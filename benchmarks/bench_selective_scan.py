"""Speed and memory of ssmcast's selective scan and SSD ops, every backend side by side.

Prints, for the machine it runs on:
  0. the fused kernels against the torch reference at the forecasters' default Mamba shape (batch 32, dim 64,
     N 16, L 96): forward, and forward+backward; and the forward's distance from the arithmetic limit (the same
     exp and multiply-adds with every operand in L1, no memory traffic);
  1. selective_scan forward+backward at batch 4, dim 128, N 16, L 2048: the fused kernel of the device (numba on
     the CPU; Triton and, if installed, mamba_ssm on CUDA), the torch reference with each of its two block scans
     (``scan="chunked"``, the CPU default, and ``scan="logdepth"``, the CUDA default), mambapy's pure-PyTorch
     ``pscan`` (if installed: ``pip install mambapy==1.2.0 --no-deps``) and a plain loop over time;
  2. peak memory of each (each run in its own subprocess: ru_maxrss after one forward+backward minus the
     resident size just before it, after a tiny warm-up call, so imports, compiled kernels and inputs are not
     counted; CUDA: max_memory_allocated), at both shapes;
  3. time and peak memory against L from 1k to 64k, with the fitted log-log slopes;
  4. ssd against selective_scan at equal sizes (dim = heads * head_dim);
  5. a chunk-size sweep for both;
  6. the latency of one decoding step per new observation.
All timings of one section are taken side by side (round robin); medians are reported.
The first call of a fused kernel in a fresh environment compiles it (numba caches it on disk): every case is
warmed up before it is timed; bench_forecasters.py --compile-time reports the compile times.

OMP_WAIT_POLICY defaults to PASSIVE here (set it yourself to override): with libgomp's default spin
waiting, a machine with more busy threads than cores makes every multi-threaded op wait for a descheduled
worker, which hurts the chunked scan (hundreds of mid-sized ops) far more than mambapy (tens of big ops);
on the shared 2-core dev machine that made a 0.9 s run take 11-28 s.

    python benchmarks/bench_selective_scan.py            # full run (a few minutes on 2 CPU cores)
    python benchmarks/bench_selective_scan.py --quick    # smoke run, small sizes
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp; see the docstring

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ssmcast.ops import backends  # noqa: E402
from ssmcast.ops.selective_scan import has_cuda_kernel, selective_scan, selective_state_update  # noqa: E402
from ssmcast.ops.ssd import ssd, ssd_state_update  # noqa: E402

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # loaded by its path (the tests): benchmarks/
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import peak_of, run_json_child, sync  # noqa: E402

try:
    from mambapy.pscan import pscan as mambapy_pscan
except ImportError:  # optional, for comparison only
    mambapy_pscan = None


# ------------------------------------------------------------------------------------------------
# the contenders: each takes (u, delta, A, B, C, D) in its own layout and returns y
# ------------------------------------------------------------------------------------------------


def make_inputs(b, dim, N, L, device, layout="bdl", seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(b, dim, L, generator=gen)
    delta = F.softplus(torch.randn(b, dim, L, generator=gen) - 2.0)
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(dim, 1)  # Mamba's S4D-real init
    B, C = torch.randn(b, N, L, generator=gen), torch.randn(b, N, L, generator=gen)
    D = torch.randn(dim, generator=gen)
    if layout == "bld":  # mambapy's (B, L, ED) / (B, L, N) layout
        u, delta, B, C = (t.transpose(1, 2).contiguous() for t in (u, delta, B, C))
    return [t.to(device).requires_grad_(True) for t in (u, delta, A, B, C, D)]


def run_ssmcast(u, delta, A, B, C, D, chunk_size=None, scan="auto"):  # the torch reference
    return selective_scan(u, delta, A, B, C, D, backend="torch", chunk_size=chunk_size, scan=scan)


def run_numba(u, delta, A, B, C, D):
    return selective_scan(u, delta, A, B, C, D, backend="numba")


def run_triton(u, delta, A, B, C, D):
    return selective_scan(u, delta, A, B, C, D, backend="triton")


def run_mamba_ssm(u, delta, A, B, C, D):
    return selective_scan(u, delta, A, B, C, D, backend="mamba_ssm")


def run_chunked(u, delta, A, B, C, D):
    return run_ssmcast(u, delta, A, B, C, D, scan="chunked")


def run_logdepth(u, delta, A, B, C, D):
    return run_ssmcast(u, delta, A, B, C, D, scan="logdepth")


def run_mambapy(x, delta, A, B, C, D):  # mambapy.mamba.MambaBlock.selective_scan, inputs (B, L, ED)
    deltaA = torch.exp(delta.unsqueeze(-1) * A)  # (B, L, ED, N)
    BX = delta.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1)  # (B, L, ED, N)
    hs = mambapy_pscan(deltaA, BX)
    return (hs @ C.unsqueeze(-1)).squeeze(3) + D * x


def run_loop(u, delta, A, B, C, D):  # the obvious reference: one Python iteration per time step
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    return torch.stack(ys, dim=-1) + u * D[:, None]


CONTENDERS = {  # ssmcast: the torch reference with the device's default scan
    "numba": (run_numba, "bdl"),
    "triton": (run_triton, "bdl"),
    "mamba_ssm": (run_mamba_ssm, "bdl"),
    "ssmcast": (run_ssmcast, "bdl"),
    "chunked": (run_chunked, "bdl"),
    "logdepth": (run_logdepth, "bdl"),
    "mambapy": (run_mambapy, "bld"),
    "loop": (run_loop, "bdl"),
}


def fused_names(device) -> list[str]:
    """The fused kernels that run on ``device`` here."""
    if device.type == "cuda":
        return ["triton"] * backends.available("triton", device) + ["mamba_ssm"] * has_cuda_kernel()
    return ["numba"] * backends.available("numba", device)


def forward_only(fn, inputs):
    with torch.no_grad():
        fn(*inputs)


def forward_backward(fn, inputs, **kw):
    for t in inputs:
        t.grad = None
    y = fn(*inputs, **kw)
    y.backward(torch.ones_like(y))


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def race(cases: dict, device, repeats: int) -> dict:
    """Median seconds of each zero-argument callable, run round robin after one warm-up each."""
    for fn in cases.values():
        fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(ts) for name, ts in times.items()}


# ------------------------------------------------------------------------------------------------
# peak memory, measured in a fresh subprocess per case
# ------------------------------------------------------------------------------------------------


def peak_memory_child(spec: dict) -> dict:
    device = torch.device(spec["device"])
    torch.set_num_threads(spec["threads"])
    fn, layout = CONTENDERS[spec["impl"]]
    forward_backward(fn, make_inputs(1, 2, 2, 3, device, layout))  # imports, compiled kernels: not counted
    inputs = make_inputs(*spec["size"], device, layout)
    return {"peak_bytes": peak_of(lambda: forward_backward(fn, inputs), device)[0]}


def peak_memory(impl: str, size, device, threads: int) -> float:
    """Extra peak memory (MiB) of one forward+backward, measured in a subprocess (CPU: the process's resident
    high-water mark) or in this process (CUDA: the allocator's peak above what is allocated before)."""
    spec = {"impl": impl, "size": list(size), "device": str(device), "threads": threads}
    if torch.device(device).type == "cuda":
        return peak_memory_child(spec)["peak_bytes"] / 2**20
    return run_json_child(__file__, ["--peak-child", json.dumps(spec)], check=True)["peak_bytes"] / 2**20


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------


def header(device):
    print("== machine ==")
    print(f"processor: {platform.processor() or platform.machine()}  platform: {platform.platform()}")
    print(f"cpu count: {os.cpu_count()}  torch threads: {torch.get_num_threads()}  torch {torch.__version__}  "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")  # fmt: skip
    if device.type == "cuda":
        print(f"cuda device: {torch.cuda.get_device_name(device)}")
    print(f"load average at start: {os.getloadavg()}  (other processes share this machine: timings are noisy)")


def section_forecaster_shape(device, quick, threads, repeats):
    size = (8, 64, 16, 96) if quick else (32, 64, 16, 96)
    names = fused_names(device)
    print(f"\n== 0. the forecasters' default Mamba shape, (batch, dim, N, L) = {size}: fused kernels vs the torch "
          "reference ==")
    if not names:
        print("  no fused kernel available on this device")
        return
    inputs = {name: make_inputs(*size, device) for name in ["ssmcast", *names]}
    for label, run in (("forward", forward_only), ("forward+backward", forward_backward)):
        med = race({name: (lambda fn=CONTENDERS[name][0], i=inputs[name], run=run: run(fn, i)) for name in inputs},
                   device, repeats * 2)  # fmt: skip
        line = "  ".join(f"{name} {t * 1e3:8.2f} ms" for name, t in med.items())
        print(f"  {label:17s} {line}")
        for name in names:
            print(f"  {'':17s} {name}: {med['ssmcast'] / med[name]:.1f}x the torch reference's speed")
    if device.type == "cpu" and "numba" in names:
        from ssmcast.ops.selective_scan_numba import arithmetic_limit

        b, dim, N, L = size
        limit = race({"limit": lambda: arithmetic_limit(b, dim, N, L)}, device, repeats * 2)["limit"]
        fwd = race({"numba": lambda: forward_only(run_numba, inputs["numba"])}, device, repeats * 2)["numba"]
        print(f"  arithmetic limit of the forward (its exp and multiply-adds, operands in L1): {limit * 1e3:.2f} ms; "
              f"the numba forward takes {fwd / limit:.2f}x that ({b * dim * N * L / 1e6:.1f} M state updates)")
    print(f"  peak memory of one forward+backward ({'allocator' if device.type == 'cuda' else 'fresh subprocess'}):")
    mems = {name: peak_memory(name, size, device, threads) for name in ["ssmcast", *names]}
    print("  " + "  ".join(f"{name} {m:7.1f} MiB" for name, m in mems.items()))


def section_headline(device, quick, threads, repeats):
    size = (2, 64, 16, 512) if quick else (4, 128, 16, 2048)
    default = "logdepth" if device.type == "cuda" else "chunked"
    print(f"\n== 1. selective_scan forward+backward, (batch, dim, N, L) = {size}; ssmcast = scan={default!r} ==")
    cases = {}
    fused = fused_names(device)
    for name, (fn, layout) in CONTENDERS.items():
        if (name == "mambapy" and mambapy_pscan is None) or name == default:
            continue
        if name in ("numba", "triton", "mamba_ssm") and name not in fused:
            continue
        inputs = make_inputs(*size, device, layout)
        cases[name] = lambda fn=fn, inputs=inputs: forward_backward(fn, inputs)
    med = race(cases, device, repeats)
    for name, t in med.items():
        print(f"  {name:10s} {t * 1e3:9.1f} ms   ({t / med['ssmcast']:.2f}x the torch reference's time)")
    other = "chunked" if default == "logdepth" else "logdepth"
    print(f"  torch reference, scan={other!r} / the default's time: {med[other] / med['ssmcast']:.2f}x")
    for name in fused:
        print(f"  {name}: {med['ssmcast'] / med[name]:.1f}x the torch reference's speed"
              + (f", {med['mambapy'] / med[name]:.1f}x mambapy pscan's" if "mambapy" in med else ""))  # fmt: skip
    if "mambapy" in med:
        print(f"  torch reference over mambapy pscan: {med['mambapy'] / med['ssmcast']:.2f}x")
    print(f"  torch reference over the loop: {med['loop'] / med['ssmcast']:.1f}x")

    print("\n== 2. peak memory of one forward+backward (CPU: a fresh subprocess each) ==")
    mems = {}
    for name in cases:
        mems[name] = peak_memory(name, size, device, threads)
        print(f"  {name:10s} {mems[name]:9.1f} MiB")
    if "mambapy" in mems:
        print(f"  ssmcast / mambapy peak: {mems['ssmcast'] / max(mems['mambapy'], 1e-9):.2f} (target <= 1)")
    for name in fused:
        print(f"  {name} / torch reference peak: {mems[name] / max(mems['ssmcast'], 1e-9):.2f}")


def section_scaling(device, quick, threads, repeats):
    b, dim, N = (1, 32, 16) if quick else (2, 64, 16)
    Ls = [256, 512, 1024, 2048] if quick else [1024, 2048, 4096, 8192, 16384, 32768, 65536]
    name = (fused_names(device) or ["ssmcast"])[0]  # what backend="auto" runs here (mamba_ssm: not timed here)
    name = "triton" if name == "mamba_ssm" else name
    print(f"\n== 3. scaling in L, (batch, dim, N) = {(b, dim, N)}, {name} ==")
    times, mems = [], []
    for L in Ls:
        inputs = make_inputs(b, dim, N, L, device)
        run = CONTENDERS[name][0]
        t = race({"s": lambda inputs=inputs, run=run: forward_backward(run, inputs)}, device, max(1, repeats // 2))
        times.append(t["s"])
        mems.append(peak_memory(name, (b, dim, N, L), device, threads))
        print(f"  L={L:6d}  {t['s'] * 1e3:9.1f} ms  {t['s'] / L * 1e6:7.2f} us/step  peak {mems[-1]:8.1f} MiB")
    slope_t = np.polyfit(np.log(Ls), np.log(times), 1)[0]
    per_step, fixed = np.polyfit(Ls, mems, 1)
    rel = np.abs(np.polyval([per_step, fixed], Ls) - mems).max() / max(mems)
    slope_m = np.polyfit(np.log(Ls), np.log(np.maximum(np.array(mems) - fixed, 1e-3)), 1)[0]
    print(f"  log-log slope of time: {slope_t:.2f} (linear = 1)")
    print(f"  peak memory ~ {fixed:.1f} MiB + {per_step * 2**10:.2f} KiB per step (worst misfit {rel:.0%}); "
          f"log-log slope of the part above the constant: {slope_m:.2f}")  # fmt: skip


def ssd_inputs(b, L, h, p, N, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, L, h, p, generator=gen)
    dt = F.softplus(torch.randn(b, L, h, generator=gen) - 2.0)
    A = -torch.rand(h, generator=gen) * 4 - 0.5
    B, C = torch.randn(b, L, 1, N, generator=gen), torch.randn(b, L, 1, N, generator=gen)
    return [t.to(device).requires_grad_(True) for t in (x, dt, A, B, C)]


def ssd_as_selective_scan(x, dt, A, B, C, chunk_size=None):
    b, L, h, p = x.shape
    N = B.shape[-1]
    u = x.reshape(b, L, h * p).transpose(1, 2)
    delta = dt.repeat_interleave(p, dim=2).transpose(1, 2)
    A_full = A.repeat_interleave(p)[:, None].expand(h * p, N)
    return selective_scan(u, delta, A_full, B.permute(0, 2, 3, 1), C.permute(0, 2, 3, 1), backend="torch",
                          chunk_size=chunk_size)  # fmt: skip


def section_ssd(device, quick, repeats):
    b, L, h, p, N = (2, 512, 4, 16, 16) if quick else (4, 2048, 8, 16, 16)
    print(f"\n== 4. ssd vs selective_scan, forward+backward, batch {b}, L {L}, heads {h} x head_dim {p}, N {N} ==")
    inputs = ssd_inputs(b, L, h, p, N, device)
    med = race({
        "ssd": lambda: forward_backward(lambda *a: ssd(*a, None, backend="torch"), inputs),
        "selective_scan": lambda: forward_backward(ssd_as_selective_scan, inputs),
    }, device, repeats)  # fmt: skip
    for name, t in med.items():
        print(f"  {name:16s} {t * 1e3:9.1f} ms")
    print(f"  selective_scan / ssd time: {med['selective_scan'] / med['ssd']:.2f}x (ssd with its default chunk)")
    b, L, h, p, N = (8, 96, 4, 16, 32) if quick else (32, 96, 4, 16, 32)
    fused = [n for n in fused_names(device) if n != "mamba_ssm"] + (["mamba_ssm"] if device.type == "cuda" and
                                                                     has_cuda_kernel() else [])  # fmt: skip
    print(f"  ssd at the forecasters' default Mamba-2 shape (batch {b}, L {L}, heads {h} x head_dim {p}, N {N}), "
          "forward+backward:")
    inputs = ssd_inputs(b, L, h, p, N, device)
    med = race({name: (lambda name=name: forward_backward(lambda *a: ssd(*a, None, backend=name), inputs))
                for name in ["torch", *fused]}, device, repeats * 2)  # fmt: skip
    print("  " + "  ".join(f"{name} {t * 1e3:8.2f} ms" for name, t in med.items()) + "   "
          + "  ".join(f"{name} {med['torch'] / med[name]:.1f}x torch" for name in fused))  # fmt: skip


def section_chunk_sweep(device, quick, repeats):
    size = (2, 64, 16, 512) if quick else (4, 128, 16, 2048)
    print(f"\n== 5. chunk-size sweep, forward+backward, selective_scan at {size} (default: None) ==")
    inputs = make_inputs(*size, device)
    sizes = [None, 64, 256, 1024] if quick else [None, 64, 128, 256, 512, 1024, 2048]
    med = race({cs: lambda cs=cs: forward_backward(run_ssmcast, inputs, chunk_size=cs) for cs in sizes}, device,
               max(1, repeats // 2))  # fmt: skip
    print("  " + "  ".join(f"{str(cs):>6s}: {t * 1e3:7.1f} ms" for cs, t in med.items()))
    b, L, h, p, N = (2, 512, 4, 16, 16) if quick else (4, 2048, 8, 16, 16)
    print(f"  ssd, batch {b}, L {L}, heads {h} x head_dim {p}, N {N}:")
    x_inputs = ssd_inputs(b, L, h, p, N, device)
    chunks = [None, 32, 64, 128] if quick else [None, 16, 32, 64, 128, 256]
    med = race({cs: lambda cs=cs: forward_backward(lambda *a: ssd(*a, cs, backend="torch"), x_inputs)
                for cs in chunks}, device, max(1, repeats // 2))  # fmt: skip
    print("  " + "  ".join(f"{str(cs):>6s}: {t * 1e3:7.1f} ms" for cs, t in med.items()))


def section_step(device, quick):
    steps = 200 if quick else 2000
    print(f"\n== 6. decoding latency per new observation (median of {steps} steps, no grad) ==")
    for b, dim, N in [(1, 128, 16), (32, 256, 16)]:
        gen = torch.Generator().manual_seed(0)
        state = torch.zeros(b, dim, N, device=device)
        x, dt = torch.randn(b, dim, generator=gen).to(device), torch.rand(b, dim, generator=gen).to(device)
        A = -torch.rand(dim, N, generator=gen).to(device)
        Bt, Ct = torch.randn(b, N, generator=gen).to(device), torch.randn(b, N, generator=gen).to(device)
        D = torch.randn(dim, generator=gen).to(device)
        args = (state, x, dt, A, Bt, Ct, D, x, None, True)
        with torch.no_grad():
            ts = [timed(lambda args=args: selective_state_update(*args), device) for _ in range(steps)]
        print(f"  selective_state_update (batch {b}, dim {dim}, N {N}): {statistics.median(ts) * 1e6:7.1f} us")
    for b, h, p, N in [(1, 8, 16, 16), (32, 16, 16, 64)]:
        gen = torch.Generator().manual_seed(0)
        state = torch.zeros(b, h, p, N, device=device)
        x = torch.randn(b, h, p, generator=gen).to(device)
        dt, A = torch.rand(b, h, generator=gen).to(device), -torch.rand(h, generator=gen).to(device)
        Bt, Ct = torch.randn(b, 1, N, generator=gen).to(device), torch.randn(b, 1, N, generator=gen).to(device)
        args = (state, x, dt, A, Bt, Ct, None, x, None, True)
        with torch.no_grad():
            ts = [timed(lambda args=args: ssd_state_update(*args), device) for _ in range(steps)]
        print(f"  ssd_state_update (batch {b}, heads {h} x head_dim {p}, N {N}): "
              f"{statistics.median(ts) * 1e6:7.1f} us")  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads (1 gives steadier numbers on a shared machine)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 5, quick 2)")
    parser.add_argument("--sections", default="0,1,3,4,5,6", help="comma-separated sections (2 runs with 1)")
    parser.add_argument("--peak-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_child:
        print(json.dumps(peak_memory_child(json.loads(args.peak_child))))
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (2 if args.quick else 5)
    sections = {int(x) for x in args.sections.split(",")}
    header(device)
    if 0 in sections:
        section_forecaster_shape(device, args.quick, args.threads, repeats)
    if 1 in sections:
        section_headline(device, args.quick, args.threads, repeats)
    if 3 in sections:
        section_scaling(device, args.quick, args.threads, repeats)
    if 4 in sections:
        section_ssd(device, args.quick, repeats)
    if 5 in sections:
        section_chunk_sweep(device, args.quick, repeats)
    if 6 in sections:
        section_step(device, args.quick)


if __name__ == "__main__":
    main()
