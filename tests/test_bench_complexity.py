"""Smoke tests of benchmarks/bench_complexity.py (issue #34): the slope fit, the budgets, matched widths, and a
tiny run of the whole script (in process, plus one point in a child process) with its output structure."""

import json
import math

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_complexity")


def test_loglog_slope_is_exact_on_power_laws(bench):
    lengths = [256, 1024, 4096, 16384, 65536]
    assert bench.loglog_slope(lengths, [3e-6 * L for L in lengths]) == pytest.approx(1.0, abs=1e-9)
    assert bench.loglog_slope(lengths, [5e-9 * L**2 for L in lengths]) == pytest.approx(2.0, abs=1e-9)
    assert bench.loglog_slope(lengths, [L * math.log(L) for L in lengths]) == pytest.approx(1.12, abs=0.01)
    with pytest.raises(ValueError):
        bench.loglog_slope([1], [1])
    with pytest.raises(ValueError):
        bench.loglog_slope([1, 2], [0, 1])


def test_fit_tail_uses_the_largest_points(bench):
    # fixed cost at small L, then linear: the tail fit sees the linear part only
    points = [{"L": L, "time_s": 1.0 + 1e-3 * L} for L in (64, 256, 1024)]
    points += [{"L": L, "time_s": 1e-3 * L} for L in (4096, 16384, 65536)]
    points.append({"L": 262144, "status": "skipped"})  # not measured: ignored
    fit = bench.fit_tail(points, "time_s", 3)
    assert fit == {"slope": pytest.approx(1.0), "L_min": 4096, "L_max": 65536, "n": 3}
    assert bench.fit_tail(points[:1], "time_s", 3) is None


def test_predict_next_extrapolates_with_at_least_slope_one(bench):
    quadratic = [{"L": 1024, "peak_mb": 10.0}, {"L": 4096, "peak_mb": 160.0}]
    assert bench.predict_next(quadratic, "peak_mb", 16384) == pytest.approx(2560.0)
    flat = [{"L": 1024, "time_s": 2.0}, {"L": 4096, "time_s": 2.0}]  # fixed costs: never predict below linear
    assert bench.predict_next(flat, "time_s", 16384) == pytest.approx(8.0)
    assert bench.predict_next([], "time_s", 16384) is None


def test_matched_widths_are_near_the_target(bench):
    for name in ("s4d", "mamba2", "transformer", "patchtst", "jamba"):
        d, count = bench.match_width(name, 50_000, 256)  # PatchTST's head alone is 25k at the narrowest width
        assert d % bench.width_step(name) == 0
        assert abs(count / 50_000 - 1) < 0.15, (name, d, count)
        assert count == bench.n_params(bench.build_model(name, d, 256))


def test_math_attention_matches_the_fused_one(bench):
    import torch

    torch.manual_seed(0)
    fused = bench.transformer_stack(16, math_attention=False)
    written = bench.transformer_stack(16, math_attention=True)
    written.load_state_dict({k.replace(".inner.", ".").replace("mixer.", "mixer.inner.") if ".mixer." in k else k: v
                             for k, v in fused.state_dict().items()})
    x = torch.randn(2, 37, 16)
    torch.testing.assert_close(written(x), fused(x), rtol=1e-5, atol=1e-5)
    y, state = written.prefill(x[:, :30])  # recurrent mode from the prefilled cache
    y_t, _ = written.step(x[:, 30], state)
    torch.testing.assert_close(y_t, fused(x[:, :31])[:, 30], rtol=1e-5, atol=1e-5)


def test_quick_run_structure(bench, tmp_path):
    out = tmp_path / "c.json"
    results = bench.main(["--quick", "--in-process", "--backbones", "s4d", "lstm", "transformer", "dlinear",
                          "--lengths", "32", "64", "128", "--target-params", "2000", "--calls", "3",
                          "--min-time-s", "0.01", "--repeats", "1", "--json", str(out), "--plot", str(tmp_path)])
    assert json.loads(out.read_text())["settings"]["lengths"] == [32, 64, 128]
    assert set(results) == {"machine", "settings", "widths", "train", "latency"}
    assert results["machine"]["cpus"] and results["machine"]["torch"]
    for name, curve in results["train"].items():
        assert [p["L"] for p in curve["points"]] == [32, 64, 128], name
        for p in curve["points"]:
            assert p["time_s"] > 0 and p["peak_mb"] >= 0 and p["params"] > 0
        fit = curve["slope_time"]
        assert (fit["L_min"], fit["L_max"], fit["n"]) == (32, 128, 3)
        times = [p["time_s"] for p in curve["points"]]
        assert fit["slope"] == pytest.approx(bench.loglog_slope([32, 64, 128], times))
        cpu = [p["cpu_s"] for p in curve["points"]]
        assert curve["slope_cpu"]["slope"] == pytest.approx(bench.loglog_slope([32, 64, 128], cpu))
    assert set(results["latency"]) == {"s4d", "lstm", "transformer", "dlinear"}
    for r in results["latency"].values():
        assert [p["L"] for p in r["points"]] == [32, 64, 128]
        assert all(p["step_ms"] > 0 and p["step_cpu_ms"] > 0 for p in r["points"]) and r["ratio"] > 0
    assert all("after_prefill_ms" in p for p in results["latency"]["transformer"]["points"])
    for name in ("complexity_time.png", "complexity_memory.png", "complexity_latency.png"):
        assert (tmp_path / name).stat().st_size > 1000
        (tmp_path / name).unlink()
    again = bench.main(["--replot", str(out), "--plot", str(tmp_path)])  # tables and figures of the saved run
    assert again["train"]["s4d"]["slope_time"] == pytest.approx(results["train"]["s4d"]["slope_time"])
    assert (tmp_path / "complexity_latency.png").stat().st_size > 1000


def test_time_budget_stops_a_curve_instead_of_running_it(bench):
    results = bench.main(["--in-process", "--backbones", "transformer", "--lengths", "16", "32", "65536",
                          "--target-params", "2000", "--min-time-s", "0.01", "--repeats", "1", "--max-step-s", "0.5",
                          "--sections", "train"])
    points = results["train"]["transformer"]["points"]
    assert [p["L"] for p in points] == [16, 32, 65536]
    assert points[-1]["status"].startswith("skipped: predicted")  # at least 2048x the time at L=32: never run
    assert results["train"]["transformer"]["stopped"] == points[-1]["status"]
    assert results["latency"] == {}


def test_memory_budget_stops_a_curve(bench, monkeypatch):
    calls = []

    def fake_child(kind, spec, timeout, in_process=False):  # quadratic memory: 16 MiB at L=1024
        calls.append(spec["L"])
        peak = 16.0 * (spec["L"] / 1024) ** 2
        return {"time_s": 1e-3, "time_min_s": 1e-3, "cpu_s": 1e-3, "repeats": 1, "params": 1, "peak_mb": peak}

    monkeypatch.setattr(bench, "run_child", fake_child)
    results = bench.main(["--backbones", "transformer_math", "--lengths", "1024", "4096", "16384", "65536",
                          "--target-params", "2000", "--max-mem-gb", "8", "--sections", "train"])
    assert calls == [1024, 4096, 16384]  # 4 GiB at 16k runs; 64 GiB predicted at 64k does not
    curve = results["train"]["transformer_math"]
    assert curve["points"][-1]["status"].startswith("out of memory budget: predicted 64.00 GiB")
    assert curve["slope_mem"]["slope"] == pytest.approx(2.0)


def test_child_process_point(bench):
    """One point through the real subprocess protocol (fresh interpreter, resident-set peak, address-space cap)."""
    spec = {"name": "s4d", "d_model": 8, "L": 256, "threads": 1, "max_mem_gb": 1.0, "repeats": 1, "min_time_s": 0.0}
    r = bench.run_child("train", spec, timeout=120)
    assert "error" not in r, r
    assert r["time_s"] > 0 and r["peak_mb"] >= 0 and r["params"] == bench.n_params(bench.build_model("s4d", 8, 256))
    assert r["peak_method"] in ("VmHWM after clear_refs", "ru_maxrss (upper bound)")
