import importlib.util
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # libgomp spin-waits stall on oversubscribed CPUs


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


if not _cuda_available():
    # the Triton kernels run in Triton's CPU interpreter (set before they are compiled): tests/ops/test_fused_scans.py
    os.environ.setdefault("TRITON_INTERPRET", "1")

settings.register_profile(
    "ssmcast", deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ssmcast")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one intra-op thread each avoids oversubscription
    import torch

    torch.set_num_threads(1)


def _data_dir() -> Path | None:
    value = os.environ.get("SSMCAST_DATA_DIR")
    if value and Path(value).is_dir():
        return Path(value)
    sibling = Path(__file__).resolve().parents[2] / "shared" / "data"
    return sibling if sibling.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark datasets (`SSMCAST_DATA_DIR`, else ../shared/data). CI always has them."""
    path = _data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("SSMCAST_DATA_DIR is not set and ../shared/data is missing in CI")
        pytest.skip(NO_DATA)
    return path


NO_DATA = "benchmark data not available: set SSMCAST_DATA_DIR"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One clear line at the end when tests were skipped for want of the benchmark datasets (issue #33)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if NO_DATA in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_line(
            f"ssmcast: {len(skipped)} test(s) were SKIPPED because the benchmark datasets are missing: get them with "
            "`make data` (see data/README.md) or point SSMCAST_DATA_DIR at a folder that holds them",
            yellow=True, bold=True,
        )  # fmt: skip


def pytest_collection_modifyitems(config, items):
    cuda = None
    for item in items:
        if "gpu" in item.keywords:
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("bench_complexity")``: a script of ``benchmarks/`` imported as a module (the scripts are not
    a package), for the tests of its functions."""

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
