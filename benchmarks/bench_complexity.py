"""Complexity against sequence length: every backbone at matched parameter counts (issue #34).

One script, one run, the machine printed first. Three measurements:

1. **Training step** (forward + backward of an MSE loss, batch 1, one channel; no optimiser step) at
   L = 256, 1024, 4096, 16384, 65536 (``--lengths``): wall time and process CPU time (medians of the timed
   steps; on a machine shared with other jobs the CPU time is the steadier of the two, and with one thread it
   is the wall time of an idle machine) and peak memory, each (backbone, L) in a fresh subprocess. The lengths
   are the outer loop, so the backbones at one L are measured side by side (minutes apart at most, under the
   same load). Sequence models (S4, S4D, S5, Liquid-S4, Mamba, Mamba-2, Jamba, LSTM, GRU and the Transformer
   baselines) run as a sequence-to-sequence net: ``Linear(1, d_model)``, the backbone's stack,
   ``Linear(d_model, 1)`` at every step, MSE against a random target of length L. Window models (PatchTST,
   DLinear) map a window of L steps to a horizon of 96: for them "sequence length" is the input window, and
   their parameter count grows with it (DLinear ``2 L 96``; PatchTST's flatten head ``d_model (L/8 + 1) 96``),
   so they are matched at the smallest length. PatchTST attends over patches, L/8 + 1 tokens (stride 8):
   quadratic in L/8.
2. **Log-log slopes** of time (wall and CPU) and memory against L per backbone, fitted over the largest points
   of each curve (``--fit-points``, default 3), where fixed costs no longer dominate; the L range is printed.
3. **Recurrent inference latency** of one ``step`` (one new observation through the whole stack, batch 1)
   after a history of 256 ... 65,536 observations: all but the last absorbed with the stack's parallel
   ``prefill``, then one ``step``, and every timed call starts from that same state (median of ``--calls``
   calls). Constant for the SSMs and RNNs; growing for attention, whose state is the key/value cache of the
   whole history. The one step matters for attention: straight from ``prefill`` its cache is a strided view of
   the projection, which the first step copies (``after_prefill_ms`` in the JSON times that first step). For
   the window models a "step" is a full forward of a window of that length (their whole history): they keep
   no state.

"Attention" baselines. The repo has no per-step Transformer backbone, so one is built here from its own parts:
``transformer`` is a GPT-style causal Transformer, one token per time step, pre-norm residual blocks of
Jamba's ``CausalSelfAttention`` (``scaled_dot_product_attention``, 4 heads, no positional encoding, a
key/value cache in ``step``) and a GELU MLP, 2 layers. This is the model the surveys' quadratic curve refers
to. On the CPU torch runs ``scaled_dot_product_attention`` with its fused flash-attention kernel, which never
materialises the L x L score matrix: its time is quadratic but its memory linear in L. ``transformer_math``
is the same model with the attention written out (``softmax(Q K^T / sqrt(d) + causal mask) V``, as the
original Transformer and ``nn.TransformerEncoder``'s math path compute it): quadratic in time and memory.
Its recurrent step is the same as ``transformer``'s, so it is left out of the latency section.

Peak memory (CPU): in the fresh subprocess of each point, after building the model and the inputs and one
warm-up step at L=64 (imports, numba kernels loaded from their cache; window models: the same net built for
64 steps), the kernel's resident-set high-water mark is reset (``/proc/self/clear_refs``) and the resident set
read (``VmRSS``); the figure is ``VmHWM`` after the first training step at L minus that: everything the step
itself made resident (activations saved for the backward, gradients, temporaries, kernel workspaces, allocator
slack), not the parameters, inputs, imports or the interpreter. Where ``clear_refs`` is refused it falls back to
``ru_maxrss`` minus the same baseline (an upper bound). CUDA: the allocator's peak above what was allocated.

Budgets, so that the run never takes the machine down: before each point the next time and memory are
predicted from the backbone's last two points (their log-log slope, at least 1) and the point is skipped,
and that backbone's curve ended, when the prediction exceeds ``--max-step-s`` or ``--max-mem-gb``. Each
child also caps its own address space (``RLIMIT_AS``) at its size after warm-up plus 1.25 x the memory budget,
so an allocation past it fails with an error in the child instead of exhausting the machine; a child that runs
past its time limit is killed. Either is reported ("out of memory budget", "skipped"), never a crash.

    python benchmarks/bench_complexity.py --quick                       # smoke run, a minute or two
    OMP_NUM_THREADS=1 python benchmarks/bench_complexity.py --plot benchmarks/figures --json runs/c.json
    python benchmarks/bench_complexity.py --backbones s5 mamba transformer --lengths 1024 4096 16384
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp (see bench_selective_scan.py)

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # loaded by its path (the tests): benchmarks/
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import peak_of, run_json_child, status_bytes, sync  # noqa: E402

HORIZON = 96  # the window models' forecast length (the long-horizon grid's shortest)
SEQUENCE = ["s4", "s4d", "s5", "liquid_s4", "mamba", "mamba2", "jamba", "lstm", "gru", "transformer",
            "transformer_math"]
WINDOW = ["patchtst", "dlinear"]
BACKBONES = SEQUENCE + WINDOW
NO_LATENCY = {"transformer_math": "its step is transformer's (one query against the cache)"}
LABELS = {"s4": "S4 (DPLR)", "s4d": "S4D", "s5": "S5", "liquid_s4": "Liquid-S4", "mamba": "Mamba",
          "mamba2": "Mamba-2", "jamba": "Jamba", "lstm": "LSTM", "gru": "GRU", "transformer": "Transformer (SDPA)",
          "transformer_math": "Transformer (math attn)", "patchtst": "PatchTST", "dlinear": "DLinear"}


# ------------------------------------------------------------------------------------------------
# the models
# ------------------------------------------------------------------------------------------------


class MathCausalSelfAttention(nn.Module):
    """Causal self-attention with the score matrix written out: ``softmax(Q K^T / sqrt(hd) + mask) V``.

    ``(B, L, d) -> (B, L, d)``, O(L^2) time and memory; the recurrent mode is the fused one's (a key/value
    cache)."""

    def __init__(self, d_model: int, n_heads: int = 4):
        super().__init__()
        from ssmcast.backbones.jamba import CausalSelfAttention

        self.inner = CausalSelfAttention(d_model, n_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prefill(x)[0]

    def prefill(self, x: torch.Tensor):
        a = self.inner
        q, k, v = a._heads(x)  # (B, nh, L, hd)
        L = x.shape[1]
        scores = (q @ k.transpose(-2, -1)) * a.head_dim**-0.5  # (B, nh, L, L)
        mask = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)
        y = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v  # (B, nh, L, hd)
        return a.out_proj(y.transpose(1, 2).flatten(-2)), (k, v)

    def initial_state(self, batch_size: int):
        return self.inner.initial_state(batch_size)

    def step(self, x_t: torch.Tensor, state):
        return self.inner.step(x_t, state)


def transformer_stack(d_model: int, n_layers: int = 2, n_heads: int = 4, math_attention: bool = False):
    """A GPT-style causal Transformer over time steps from the repo's parts: pre-norm blocks of
    ``CausalSelfAttention`` (or its written-out twin) + GELU MLP (expand 2), a final LayerNorm."""
    from ssmcast.backbones.blocks import MLP, ResidualBlock, SequenceStack
    from ssmcast.backbones.jamba import CausalSelfAttention

    def attention():
        return MathCausalSelfAttention(d_model, n_heads) if math_attention else CausalSelfAttention(d_model, n_heads)

    blocks = [ResidualBlock(attention(), d_model, norm="layer", mlp=MLP(d_model, 2)) for _ in range(n_layers)]
    return SequenceStack(blocks, d_model, norm="layer")


def width_step(name: str) -> int:
    """``d_model`` must be a multiple of this (attention heads: 4; Mamba-2: 2 d_model divisible by head_dim 16)."""
    return {"mamba2": 8, "jamba": 4, "transformer": 4, "transformer_math": 4, "patchtst": 4}.get(name, 2)


def build_stack(name: str, d_model: int) -> nn.Module:
    """The backbone's stack ``(B, L, d_model) -> (B, L, d_model)`` (sequence models): its config's defaults but
    ``d_model``."""
    from ssmcast import backbones as bb

    if name in ("transformer", "transformer_math"):
        return transformer_stack(d_model, math_attention=name == "transformer_math")
    configs = {"s4": bb.S4Config, "s4d": bb.S4DConfig, "s5": bb.S5Config, "liquid_s4": bb.LiquidS4Config,
               "mamba": bb.MambaConfig, "mamba2": bb.Mamba2Config, "jamba": bb.JambaConfig, "lstm": bb.LSTMConfig,
               "gru": bb.GRUConfig}
    return configs[name](d_model=d_model).build()


class SequenceNet(nn.Module):
    """``x (B, L, 1) -> (B, L, 1)``: a linear embedding, the stack, a linear readout at every step."""

    def __init__(self, stack: nn.Module, d_model: int):
        super().__init__()
        self.embed, self.stack, self.readout = nn.Linear(1, d_model), stack, nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.stack(self.embed(x)))


def build_model(name: str, d_model: int, L: int) -> nn.Module:
    """Sequence models: :class:`SequenceNet` (independent of ``L``); window models: the net for windows of ``L``
    steps and a horizon of :data:`HORIZON` (``d_model`` unused by DLinear)."""
    from ssmcast import backbones as bb

    if name == "dlinear":
        return bb.DLinearConfig().build(L, HORIZON)
    if name == "patchtst":
        return bb.PatchTSTConfig(d_model=d_model, n_heads=4, d_ff=2 * d_model).build(L, HORIZON)
    return SequenceNet(build_stack(name, d_model), d_model)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def match_width(name: str, target: int, L: int, max_width: int = 512) -> tuple[int, int]:
    """``(d_model, parameter count)`` of the width (a multiple of :func:`width_step`) whose count is nearest
    ``target`` (window models: at windows of ``L``). The count grows with the width: a bisection."""
    if name == "dlinear":
        return 0, n_params(build_model(name, 0, L))
    step = width_step(name)
    widths = list(range(step, max_width + 1, step))
    counts: dict[int, int] = {}

    def count(i: int) -> int:
        if i not in counts:
            counts[i] = n_params(build_model(name, widths[i], L))
        return counts[i]

    lo, hi = 0, len(widths) - 1
    while lo < hi:  # the first width at or above the target
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    best = min((i for i in (lo - 1, lo) if i >= 0), key=lambda i: abs(count(i) - target))
    return widths[best], count(best)


# ------------------------------------------------------------------------------------------------
# fitting and budgets
# ------------------------------------------------------------------------------------------------


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of ``log(y)`` against ``log(x)`` (1: linear, 2: quadratic)."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(xs) < 2 or len(xs) != len(ys):
        raise ValueError(f"need at least two (x, y) pairs of equal length, got {len(xs)} and {len(ys)}")
    if (xs <= 0).any() or (ys <= 0).any():
        raise ValueError("log-log slopes need positive values")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def fit_tail(points: list[dict], key: str, n: int) -> dict | None:
    """The slope of ``key`` against L over the last ``n`` measured points (those with a positive value):
    ``{"slope", "L_min", "L_max", "n"}``, or None with fewer than two."""
    measured = [p for p in points if p.get(key) is not None and p[key] > 0]
    tail = measured[-n:]
    if len(tail) < 2:
        return None
    return {"slope": loglog_slope([p["L"] for p in tail], [p[key] for p in tail]), "L_min": tail[0]["L"],
            "L_max": tail[-1]["L"], "n": len(tail)}


def over_budget(points: list[dict], key: str, L: int, limit: float, flag: str, shown, prefix: str = "skipped"):
    """Why the point at ``L`` is not run: ``"{prefix}: predicted {shown(value)} > {flag}"`` when ``key`` predicted
    from the curve's measured ``points`` (:func:`predict_next`) exceeds ``limit``; None when it fits, or before a
    point is measured. ``flag`` names the option and its value, ``shown`` formats the prediction."""
    predicted = predict_next(points, key, L)
    if predicted is None or predicted <= limit:
        return None
    return f"{prefix}: predicted {shown(predicted)} > {flag}"


def predict_next(points: list[dict], key: str, L: int) -> float | None:
    """``key`` at ``L`` extrapolated from the last two measured points with their log-log slope (at least 1,
    so fixed costs at small L never make the prediction optimistic); None before two points."""
    measured = [p for p in points if p.get(key) is not None and p[key] > 0]
    if not measured:
        return None
    last = measured[-1]
    slope = 1.0
    if len(measured) >= 2:
        slope = max(1.0, loglog_slope([measured[-2]["L"], last["L"]], [measured[-2][key], last[key]]))
    return last[key] * (L / last["L"]) ** slope


# ------------------------------------------------------------------------------------------------
# the measurements (run in a child process)
# ------------------------------------------------------------------------------------------------


def _guard_memory(max_mem_gb: float) -> None:
    """Cap this process's address space at its present size plus 1.25 x the budget (allocations past it fail)."""
    try:
        limit = status_bytes("VmSize") + int(1.25 * max_mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (OSError, ValueError, RuntimeError):
        pass


def _child_device(spec: dict) -> torch.device:
    """A child's set-up: the seed, the threads of ``spec``; its device."""
    torch.manual_seed(0)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    return torch.device(spec.get("device", "cpu"))


def train_point(spec: dict) -> dict:
    """One (backbone, L) point: peak memory of the first training step, then the median time of the next ones."""
    device = _child_device(spec)
    name, L, batch = spec["name"], spec["L"], spec.get("batch", 1)
    window = name in WINDOW
    model = build_model(name, spec["d_model"], L).to(device).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, L, 1, generator=gen).to(device)
    target = torch.randn(batch, HORIZON, 1, 1, generator=gen) if window else torch.randn(batch, L, 1, generator=gen)
    target = target.to(device)

    def step(net, x, target):
        for p in net.parameters():
            p.grad = None
        out = net(x)
        loss = F.mse_loss(out, target)
        if not window:
            aux = net.stack.aux_loss()  # Jamba's MoE load-balancing loss (0 elsewhere)
            loss = loss + aux
        loss.backward()

    # imports, numba kernels from their cache, lazy set-up: not counted (a window model: its twin for 64 steps)
    if window:
        twin = build_model(name, spec["d_model"], 64).to(device).train()
        step(twin, torch.randn(batch, 64, 1, device=device), target)
        del twin
    else:
        step(model, x[:, :64], target[:, :64])
    gc.collect()
    if spec.get("guard", True) and device.type == "cpu":
        _guard_memory(spec["max_mem_gb"])
    out = {"params": n_params(model)}
    firsts: list[float] = []  # the first step's time, taken inside the peak-memory measurement
    peak, method = peak_of(lambda: firsts.append(_timed(lambda: step(model, x, target), device)), device)
    (first,) = firsts
    if device.type != "cuda":
        out["peak_method"] = method
    out["peak_mb"] = peak / 2**20
    repeats = max(spec.get("repeats", 3), min(30, math.ceil(spec.get("min_time_s", 1.0) / max(first, 1e-4))))
    times, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step(model, x, target)
        sync(device)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    out.update(time_s=statistics.median(times), time_min_s=min(times), cpu_s=statistics.median(cpus),
               first_step_s=first, repeats=repeats)
    return out


def _timed(fn, device) -> float:
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def latency_curve(spec: dict) -> dict:
    """Step latency after each history (ascending), for one backbone; stops at the budgets."""
    device = _child_device(spec)
    name, d, calls = spec["name"], spec["d_model"], spec.get("calls", 100)
    if spec.get("guard", True) and device.type == "cpu":
        _guard_memory(spec["max_mem_gb"])
    points: list[dict] = []
    stack = None if name in WINDOW else build_stack(name, d).to(device).eval()
    for history in spec["histories"]:
        point = {"L": history}
        status = over_budget(points, "prefill_s", history, spec["max_prefill_s"],
                             f"--max-prefill-s {spec['max_prefill_s']:g}", lambda s: f"{s:.0f} s")  # fmt: skip
        if status:
            point["status"] = status
            points.append(point)
            break
        try:
            with torch.no_grad():
                if stack is None:  # a window model: one step is a full forward of the window
                    model = build_model(name, d, history).to(device).eval()
                    x = torch.randn(1, history, 1, device=device)
                    t0 = time.perf_counter()
                    model(x)
                    sync(device)
                    point["prefill_s"] = time.perf_counter() - t0  # the first forward
                    call = lambda model=model, x=x: model(x)  # noqa: E731
                    point["params"] = n_params(model)
                else:
                    x = torch.randn(1, history + 1, d, device=device)
                    stack.prefill(x[:, :16])  # warm-up
                    t0 = time.perf_counter()
                    _, prefilled = stack.prefill(x[:, : history - 1])
                    sync(device)
                    point["prefill_s"] = time.perf_counter() - t0
                    x_last = x[:, history - 1]
                    after = [_timed(lambda s=prefilled, u=x_last: stack.step(u, s), device) for _ in range(5)]
                    point["after_prefill_ms"] = statistics.median(after) * 1e3
                    # the state after `history` observations: prefill, then one step (attention's cache is then
                    # contiguous, as in streaming; straight from prefill it is a strided view of the projection)
                    _, state = stack.step(x[:, history - 1], prefilled)
                    call = lambda state=state, x=x, h=history: stack.step(x[:, h], state)  # noqa: E731
                n = calls if stack is not None else max(3, min(calls, int(1.0 / max(point["prefill_s"], 1e-4))))
                for _ in range(min(5, n)):
                    call()
                sync(device)
                times, cpus = [], []
                for _ in range(n):
                    t0, c0 = time.perf_counter(), time.process_time()
                    call()
                    sync(device)
                    times.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
            point.update(step_ms=statistics.median(times) * 1e3, step_min_ms=min(times) * 1e3,
                         step_cpu_ms=statistics.median(cpus) * 1e3, calls=n)
        except (RuntimeError, MemoryError) as error:
            point["status"] = f"out of memory budget ({type(error).__name__}: {str(error).splitlines()[0][:80]})"
            points.append(point)
            break
        points.append(point)
        gc.collect()
    return {"points": points}


# ------------------------------------------------------------------------------------------------
# the parent: subprocesses, budgets, report
# ------------------------------------------------------------------------------------------------


def run_child(kind: str, spec: dict, timeout: float, in_process: bool = False) -> dict:
    """``train_point`` / ``latency_curve`` in a fresh interpreter (or here, ``in_process``); an error or a
    timeout comes back as ``{"error": ...}``."""
    fn = {"train": train_point, "latency": latency_curve}[kind]
    if in_process:
        try:
            return fn({**spec, "guard": False})
        except (RuntimeError, MemoryError) as error:
            return {"error": f"{type(error).__name__}: {error}"}
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if spec.get("threads"):
        env.setdefault("NUMBA_NUM_THREADS", str(spec["threads"]))
    return run_json_child(os.path.abspath(__file__), ["--_child", json.dumps([kind, spec])], timeout, env)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"load avg {one:.2f} {five:.2f} {fifteen:.2f}"
    except OSError:
        return "load avg n/a"


def machine(device: torch.device, threads: int) -> dict:
    info = {"cpu": cpu_model(), "cpus": os.cpu_count(), "memory_gb": total_memory_gb(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "threads": threads,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _fmt_mem(mb: float | None) -> str:
    if mb is None:
        return "-"
    return f"{mb:.1f} MiB" if mb < 1024 else f"{mb / 1024:.2f} GiB"


def _status_short(point: dict) -> str:
    status = point.get("status", "")
    if status.startswith("out of memory"):
        return "OOM budget"
    if status.startswith("skipped"):
        return "skipped"
    return "error" if status else "-"


def run(args) -> dict:
    device = torch.device(args.device)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    results = {"machine": machine(device, threads), "settings": {
        "target_params": args.target_params, "lengths": args.lengths, "histories": args.histories,
        "batch": args.batch, "horizon_window_models": HORIZON, "max_mem_gb": args.max_mem_gb,
        "max_step_s": args.max_step_s, "max_prefill_s": args.max_prefill_s, "fit_points": args.fit_points,
        "repeats": args.repeats, "in_process": args.in_process}}
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['cpus']} cpus, {m['memory_gb'] or 0:.0f} GiB RAM, {m['platform']}, "
          f"Python {m['python']}, torch {m['torch']}, torch threads {threads} (OMP_NUM_THREADS={m['OMP_NUM_THREADS']}, "
          f"OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}), device {device}" + (f" ({m['gpu']})" if "gpu" in m else ""))
    print(f"start: {time.strftime('%Y-%m-%d %H:%M:%S')}  ({load()})")
    print("note: medians of wall and process CPU time; on a shared machine the wall times are noisy (load averages are "
          "printed beside them)\n  and the CPU times the steadier measure.")
    print("'transformer' is built here (the repo has no per-step Transformer backbone): pre-norm blocks of Jamba's "
          "CausalSelfAttention\n  (torch SDPA, 4 heads, one token per time step, no positional encoding, KV cache "
          "in step) + GELU MLP, 2 layers:\n  the model of the surveys' quadratic curve. On the CPU SDPA runs a fused "
          "flash kernel (O(L^2) time, O(L) memory);\n  'transformer_math' writes the attention out "
          "(softmax(QK^T/sqrt(d) + mask) V: O(L^2) time and memory).")

    # ---- matched parameter counts ----
    match_L = min(args.lengths)
    print(f"\nparameter counts (target {args.target_params:,}; window models at L={match_L}, horizon {HORIZON}):")
    widths = {}
    for name in args.backbones:
        d, count = match_width(name, args.target_params, match_L)
        widths[name] = {"d_model": d, "params": count, "off_target": count / args.target_params - 1}
        detail = f"d_model {d:4d}" if name != "dlinear" else "no width (2 L h + 2 h)"
        grows = ""
        if name in WINDOW:
            at_max = n_params(build_model(name, d, max(args.lengths)))
            widths[name]["params_at_max_L"] = at_max
            grows = f"; grows with L: {at_max:,} at L={max(args.lengths)}"
        print(f"  {name:17s} {detail:24s} {count:9,d} params ({count / args.target_params - 1:+.1%}){grows}")
    results["widths"] = widths

    # ---- training step against L ----
    print(f"\n[1] training step (forward + backward, MSE, batch {args.batch}, one channel), each point in a fresh "
          f"{'process' if not args.in_process else 'call (in process: memory is NOT from a fresh process)'}; "
          f"budgets {args.max_step_s:g} s a step, {args.max_mem_gb:g} GB")
    train = {name: {"points": [], "stopped": None} for name in args.backbones}
    # the lengths outside: the backbones of one L side by side
    for L in args.lengths if "train" in args.sections else []:
        print(f"  L={L}  ({load()}, {time.strftime('%H:%M:%S')})", flush=True)
        for name in args.backbones:
            curve = train[name]
            if curve["stopped"]:
                continue
            point = {"L": L}
            status = (over_budget(curve["points"], "peak_mb", L, args.max_mem_gb * 1024,
                                  f"--max-mem-gb {args.max_mem_gb:g}", _fmt_mem, "out of memory budget")
                      or over_budget(curve["points"], "time_s", L, args.max_step_s, f"--max-step-s {args.max_step_s:g}",
                                     lambda t: f"{_fmt_time(t)} a step"))  # fmt: skip
            if status:
                point["status"] = status
            else:
                spec = {"name": name, "d_model": widths[name]["d_model"], "L": L, "batch": args.batch,
                        "threads": threads, "device": args.device, "max_mem_gb": args.max_mem_gb,
                        "repeats": args.repeats, "min_time_s": args.min_time_s}
                timeout = args.max_step_s * (args.repeats + 4) + 120
                r = run_child("train", spec, timeout, args.in_process)
                if "error" in r:
                    memoryish = any(k in r["error"].lower() for k in ("memory", "alloc", "signal 9"))
                    point["status"] = ("out of memory budget: " if memoryish else "skipped: ") + r["error"][:160]
                else:
                    point.update(r)
            curve["points"].append(point)
            if "status" in point:
                curve["stopped"] = point["status"]
                print(f"    {name:17s} {point['status']}", flush=True)
            else:
                print(f"    {name:17s} {_fmt_time(point['time_s']):>10s} (min {_fmt_time(point['time_min_s'])}, CPU "
                      f"{_fmt_time(point['cpu_s'])}, {point['repeats']} steps)   "
                      f"peak {_fmt_mem(point['peak_mb']):>10s}   {point['time_s'] / L * 1e6:8.2f} us/step of L   "
                      f"{point['params']:,} params", flush=True)
    for curve in train.values():
        measured = [p for p in curve["points"] if "time_s" in p]
        curve["slope_time"] = fit_tail(measured, "time_s", args.fit_points)
        curve["slope_cpu"] = fit_tail(measured, "cpu_s", args.fit_points)
        curve["slope_mem"] = fit_tail(measured, "peak_mb", args.fit_points)
        curve["slope_time_all"] = fit_tail(measured, "time_s", len(measured)) if len(measured) > 2 else None
    results["train"] = train
    print_train_tables(train, args.lengths)

    # ---- recurrent inference latency ----
    names = [n for n in args.backbones if n not in NO_LATENCY and "latency" in args.sections]
    if not names:
        results["latency"] = {}
        print(f"\nend: {time.strftime('%Y-%m-%d %H:%M:%S')}  ({load()})")
        return results
    print(f"\n[3] recurrent inference: latency of one step (batch 1, the whole stack) from the state after a history "
          f"(prefill of all but the last\n    observation, then one step); every call from that same state, median of "
          f"{args.calls} calls. Window models: one step = a full forward\n    of a window of that length.")
    for name, why in NO_LATENCY.items():
        if name in args.backbones:
            print(f"    ({name} left out: {why})")
    latency = {}
    for name in names:
        spec = {"name": name, "d_model": widths[name]["d_model"], "histories": args.histories, "calls": args.calls,
                "threads": threads, "device": args.device, "max_mem_gb": args.max_mem_gb,
                "max_prefill_s": args.max_prefill_s}
        timeout = args.max_prefill_s * 3 * len(args.histories) + 300
        r = run_child("latency", spec, timeout, args.in_process)
        if "error" in r:
            r = {"points": [{"L": args.histories[0], "status": "skipped: " + r["error"][:160]}]}
        latency[name] = r
        cells = []
        for p in r["points"]:
            if "step_ms" in p:
                extra = f", first step after it {p['after_prefill_ms']:.2f} ms" if "after_prefill_ms" in p else ""
                cells.append(f"{p['L']}: {p['step_ms']:.3f} ms (prefill {_fmt_time(p['prefill_s'])}{extra})")
            else:
                cells.append(f"{p['L']}: {p['status']}")
        measured = [p for p in r["points"] if "step_ms" in p]
        ratio = measured[-1]["step_ms"] / measured[0]["step_ms"] if len(measured) >= 2 else None
        r["ratio"] = ratio
        r["ratio_range"] = [measured[0]["L"], measured[-1]["L"]] if ratio else None
        r["ratio_cpu"] = latency_ratio(r["points"], "step_cpu_ms")
        tail = f"   ratio {measured[-1]['L']} / {measured[0]['L']}: {ratio:.2f}" if ratio else ""
        print(f"  {name:17s} " + ";  ".join(cells) + tail + f"  ({load()})", flush=True)
    results["latency"] = latency
    print_latency_table(latency, args.histories)
    print(f"\nend: {time.strftime('%Y-%m-%d %H:%M:%S')}  ({load()})")
    return results


def print_train_tables(train: dict, lengths: list[int]) -> None:
    header = "| backbone | " + " | ".join(f"L={L}" for L in lengths)
    print("\n[2] the curves, with the log-log slopes fitted over the last points of each (the range in brackets)")
    for key, title in (("time", "training step wall time (median)"),
                       ("cpu", "training step process CPU time (median; less sensitive to other jobs than wall time)")):
        print(f"\n{title}:")
        print(header + " | slope (range) |")
        print("|---" * (len(lengths) + 2) + "|")
        field = "time_s" if key == "time" else "cpu_s"
        for name, curve in train.items():
            cells = {p["L"]: (_fmt_time(p[field]) if field in p else _status_short(p)) for p in curve["points"]}
            s = curve.get(f"slope_{key}")
            slope = f"{s['slope']:.2f} ({s['L_min']}-{s['L_max']})" if s else "-"
            print(f"| {name} | " + " | ".join(cells.get(L, "-") for L in lengths) + f" | {slope} |")
    print("\npeak memory of one training step (resident set above the state before it):")
    print(header + " | slope (range) |")
    print("|---" * (len(lengths) + 2) + "|")
    for name, curve in train.items():
        cells = {p["L"]: (_fmt_mem(p["peak_mb"]) if "peak_mb" in p else _status_short(p)) for p in curve["points"]}
        s = curve["slope_mem"]
        slope = f"{s['slope']:.2f} ({s['L_min']}-{s['L_max']})" if s else "-"
        print(f"| {name} | " + " | ".join(cells.get(L, "-") for L in lengths) + f" | {slope} |")
    for name, curve in train.items():
        if curve["stopped"]:
            print(f"  {name}: stopped at L={curve['points'][-1]['L']}: {curve['stopped']}")


def latency_ratio(points: list[dict], key: str = "step_ms") -> float | None:
    """``key`` at the longest measured history over the shortest (1: constant per step)."""
    measured = [p for p in points if p.get(key)]
    return measured[-1][key] / measured[0][key] if len(measured) >= 2 else None


def print_latency_table(latency: dict, histories: list[int]) -> None:
    for key, title in (("step_ms", "step latency, wall time (median, ms) against history"),
                       ("step_cpu_ms", "step latency, process CPU time (median, ms) against history")):
        if not any(p.get(key) for r in latency.values() for p in r["points"]):
            continue
        print(f"\n{title}:")
        print("| backbone | " + " | ".join(f"{h}" for h in histories) + " | last / first |")
        print("|---" * (len(histories) + 2) + "|")
        for name, r in latency.items():
            cells = {p["L"]: (f"{p[key]:.3f}" if key in p else _status_short(p)) for p in r["points"]}
            ratio = latency_ratio(r["points"], key)
            ratio = f"{ratio:.2f}" if ratio else "-"
            print(f"| {name} | " + " | ".join(cells.get(h, "-") for h in histories) + f" | {ratio} |")


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------


def plot(results: dict, outdir: str) -> list[str]:
    """Three PNGs: training step time and peak memory against L, step latency against history (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    m = results["machine"]
    where = f"{m['cpu']}, {m['threads']} thread(s), torch {m['torch']}"
    colors = ["#1f77b4", "#17becf", "#2ca02c", "#98df8a", "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#bcbd22",
              "#000000", "#7f7f7f", "#e377c2", "#f7b6d2"]
    styles = {}
    for i, name in enumerate(BACKBONES):
        styles[name] = {"color": colors[i % len(colors)], "marker": "os^vD<>ph*xP+"[i % 13],
                        "linestyle": "--" if name in WINDOW else ("-." if "transformer" in name else "-")}
    files = []

    def reference(ax, xs, y0, slope, label):
        xs = np.asarray(xs, dtype=float)
        ax.plot(xs, y0 * (xs / xs[0]) ** slope, color="0.6", linewidth=0.8, linestyle=":")
        ax.annotate(label, (xs[-1], y0 * (xs[-1] / xs[0]) ** slope), fontsize=7, color="0.4")

    def figure(key, curves, xlabel, ylabel, title, fname, scale=1.0):
        fig, ax = plt.subplots(figsize=(7, 4.6), dpi=100)
        lo = None
        for name, pts in curves.items():
            pts = [p for p in pts if p.get(key)]
            if not pts:
                continue
            xs, ys = [p["L"] for p in pts], [p[key] * scale for p in pts]
            ax.plot(xs, ys, label=LABELS.get(name, name), markersize=4, linewidth=1.2, **styles[name])
            lo = min(ys) if lo is None else min(lo, min(ys))
        xs_all = sorted({p["L"] for pts in curves.values() for p in pts})
        if lo is not None and len(xs_all) >= 2:
            reference(ax, xs_all, lo, 1, "slope 1")
            reference(ax, xs_all[: max(2, len(xs_all) - 1)], lo, 2, "slope 2")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs_all, [f"{x // 1024}k" if x >= 1024 and x % 1024 == 0 else str(x) for x in xs_all])
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=6.5, ncol=2, loc="upper left")
        fig.text(0.99, 0.01, where, fontsize=6, ha="right", color="0.4")
        fig.tight_layout()
        path = os.path.join(outdir, fname)
        fig.savefig(path)
        plt.close(fig)
        files.append(path)

    train = {n: c["points"] for n, c in results["train"].items()}
    figure("cpu_s", train, "sequence length L (window models: input window)",
           "process CPU time of one training step (s)",
           f"Training step (forward + backward) against L, batch {results['settings']['batch']}, "
           f"~{results['settings']['target_params']:,} parameters", "complexity_time.png")
    figure("peak_mb", train, "sequence length L (window models: input window)", "peak memory of one step (MiB)",
           "Peak memory of one training step against L (resident set, fresh process)", "complexity_memory.png")
    latency = {n: r["points"] for n, r in results["latency"].items()}
    key = "step_cpu_ms" if any(p.get("step_cpu_ms") for pts in latency.values() for p in pts) else "step_ms"
    figure(key, latency, "history (observations absorbed before the step)",
           "one step, process CPU time (ms)" if key == "step_cpu_ms" else "latency of one step (ms)",
           "Recurrent inference: one step after a history (window models: one forward of the window)",
           "complexity_latency.png")
    return files


# ------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: short lengths, small models, few backbones")
    parser.add_argument("--backbones", nargs="*", default=None, choices=BACKBONES, help="default: all")
    parser.add_argument("--lengths", nargs="*", type=int, default=None, help="default 256 1024 4096 16384 65536")
    parser.add_argument("--histories", nargs="*", type=int, default=None, help="default: the lengths")
    parser.add_argument("--target-params", type=int, default=None, help="default 50000 (quick: 5000)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per point (at least)")
    parser.add_argument("--min-time-s", type=float, default=1.0, help="time each point for about this long")
    parser.add_argument("--calls", type=int, default=100, help="step calls per latency point")
    parser.add_argument("--max-mem-gb", type=float, default=8.0, help="peak memory budget of one point")
    parser.add_argument("--max-step-s", type=float, default=60.0, help="time budget of one training step")
    parser.add_argument("--max-prefill-s", type=float, default=240.0, help="time budget of one prefill (latency)")
    parser.add_argument("--fit-points", type=int, default=3, help="the slopes are fitted over the last N points")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--in-process", action="store_true",
                        help="no subprocesses (tests, smoke runs): memory is then not from a fresh process")
    parser.add_argument("--sections", nargs="*", default=["train", "latency"], choices=["train", "latency"])
    parser.add_argument("--json", default=None, help="write every number here")
    parser.add_argument("--plot", default=None, metavar="DIR", help="write the PNG figures here")
    parser.add_argument("--replot", default=None, metavar="JSON",
                        help="print the tables of a saved --json run and draw its figures (--plot); measures nothing")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.backbones = args.backbones or ["s4d", "mamba", "transformer", "transformer_math", "dlinear"]
        args.lengths = args.lengths or [128, 512, 2048]
        args.target_params = args.target_params or 5000
        args.calls = min(args.calls, 20)
        args.min_time_s = min(args.min_time_s, 0.2)
        args.repeats = min(args.repeats, 2)
    args.backbones = args.backbones or list(BACKBONES)
    args.lengths = sorted(args.lengths or [256, 1024, 4096, 16384, 65536])
    args.histories = sorted(args.histories or args.lengths)
    args.target_params = args.target_params or 50_000
    return args


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args._child:
        kind, spec = json.loads(args._child)
        fn = {"train": train_point, "latency": latency_curve}[kind]
        try:
            result = fn(spec)
        except MemoryError as error:
            result = {"error": f"MemoryError: {error}"}
        print(json.dumps(result))
        return None
    if args.replot:  # the tables and figures of a saved run, without measuring anything
        with open(args.replot) as f:
            results = json.load(f)
        print(f"tables of {args.replot} (machine: {results['machine']['cpu']}, torch {results['machine']['torch']}, "
              f"{results['machine']['threads']} thread(s))")
        if results["train"]:
            print_train_tables(results["train"], results["settings"]["lengths"])
        if results["latency"]:
            print_latency_table(results["latency"], results["settings"]["histories"])
        for path in plot(results, args.plot) if args.plot else []:
            print(f"wrote {path}")
        return results
    results = run(args)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        for path in plot(results, args.plot):
            print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
