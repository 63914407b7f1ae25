"""``ssmcast data list | fetch | verify``, run in-process through ``ssmcast.cli.main`` (no network: mirrors are
``file://`` URLs or a ``_fetch`` that refuses)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.error
from pathlib import Path

import pytest

from ssmcast import cli
from ssmcast.datasets import DataFile, Mirror, list_datasets, registry, storage

TOY = b"Month,AirPassengers\n1949-01,112\n1949-02,118\n"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fake checkout (its data/ holds only the README), an empty cache, no $SSMCAST_DATA_DIR; file:// URLs only."""
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'ssmcast'\n")
    (root / "data" / "README.md").write_text("# data\n")
    monkeypatch.setattr(storage, "CHECKOUT_ROOT", root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SSMCAST_DATA_DIR", raising=False)
    for key, value in cli.MLFLOW_ENV_DEFAULTS.items():  # main() sets these; restore them afterwards
        monkeypatch.setenv(key, os.environ.get(key, value))

    def local_only(url):
        if url.startswith("file:"):
            return real_fetch(url)  # urllib reads file:// URLs: a local mirror
        raise urllib.error.URLError(f"no network in tests ({url})")

    real_fetch = storage._fetch
    monkeypatch.setattr(storage, "_fetch", local_only)
    return {"data": root / "data", "cache": tmp_path / "xdg" / "ssmcast", "tmp": tmp_path}


def toy_airline(monkeypatch, *urls: str, content: bytes = TOY) -> DataFile:
    """Make the registry's airline entry a tiny file (checksum of ``content``) downloadable from ``urls``."""
    info = registry.dataset_info("airline")
    file = DataFile(
        "airline/Airline.csv",
        hashlib.sha256(content).hexdigest(),
        len(content),
        "0" * 40,
        tuple(Mirror(url) for url in urls),
    )
    monkeypatch.setitem(registry._REGISTRY, "airline", dataclasses.replace(info, files=(file,)))
    return file


def serve(tmp_path: Path, content: bytes, name: str = "Airline.csv") -> str:
    path = tmp_path / "server" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path.as_uri()


def data_files(root: Path) -> list[Path]:
    """Every file under ``root`` but the README (temporary files included)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README.md")


def rewrite(path: Path, content: bytes) -> None:
    """Overwrite and move the modification time on, so a memoised hash cannot hide the change."""
    stat = path.stat()
    path.write_bytes(content)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_usage_and_help_name_the_command(capsys):
    assert "data" in cli.COMMANDS and "ssmcast data fetch" in cli.USAGE
    assert cli.main(["data", "--help"]) == 0
    assert "list,fetch,verify" in capsys.readouterr().out
    assert cli.main(["data"]) == 2  # an action is required
    assert cli.main(["data", "fetch", "--bogus"]) == 2


def test_fetch_through_a_file_mirror_into_the_checkout(env, monkeypatch, capsys):
    file = toy_airline(monkeypatch, serve(env["tmp"], TOY))
    assert cli.main(["data", "fetch", "airline"]) == 0
    target = env["data"] / file.path
    assert target.read_bytes() == TOY and data_files(env["data"]) == [target]
    assert f"airline: airline/Airline.csv -> {target}" in capsys.readouterr().out
    assert not env["cache"].exists()
    assert cli.main(["data", "fetch", "AIRLINE"]) == 0  # names are case-insensitive; a verified file stays
    assert "already present, sha256 verified" in capsys.readouterr().out


def test_fetch_outside_a_checkout_goes_to_the_cache_and_dir_wins(env, monkeypatch, capsys):
    monkeypatch.setattr(storage, "CHECKOUT_ROOT", env["tmp"] / "site-packages")
    file = toy_airline(monkeypatch, serve(env["tmp"], TOY))
    assert cli.main(["data", "fetch", "airline"]) == 0
    assert (env["cache"] / file.path).read_bytes() == TOY
    elsewhere = env["tmp"] / "elsewhere"
    assert cli.main(["data", "fetch", "airline", "--dir", str(elsewhere)]) == 0
    assert (elsewhere / file.path).read_bytes() == TOY
    assert f"set SSMCAST_DATA_DIR={elsewhere}" in capsys.readouterr().out  # not searched: say how to use it


def test_a_mismatching_download_leaves_nothing(env, monkeypatch, capsys):
    url = serve(env["tmp"], TOY + b"1949-03,132\n")
    file = toy_airline(monkeypatch, url)
    assert cli.main(["data", "fetch", "airline"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("ssmcast: error: airline: the download of airline/Airline.csv")
    assert "does not match" in err[0] and url in err[0] and file.sha256 in err[0]
    assert data_files(env["data"]) == []  # no target, no temporary file


def test_an_unreachable_mirror_names_the_urls_tried(env, monkeypatch, capsys):
    urls = ("https://example.invalid/a/Airline.csv", "https://example.invalid/b/Airline.csv")
    toy_airline(monkeypatch, *urls)
    assert cli.main(["data", "fetch", "airline"]) == 1
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("ssmcast: error: airline: cannot download airline/Airline.csv")
    assert all(url in first for url in urls) and "no network in tests" in first
    assert data_files(env["data"]) == []


def test_unknown_names_list_the_known_ones(env, capsys):
    assert cli.main(["data", "fetch", "etth1", "nope", "ETTh9"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset(s) 'nope', 'etth9'" in err and ", ".join(list_datasets()) in err
    assert cli.main(["data", "verify", "nope"]) == 2
    assert cli.main(["data", "fetch"]) == 2
    assert "or pass --all" in capsys.readouterr().err
    assert data_files(env["data"]) == []


def test_from_a_missing_or_incomplete_folder(env, monkeypatch, capsys):
    assert cli.main(["data", "fetch", "airline", "--from", str(env["tmp"] / "nowhere")]) == 2
    assert "--from" in capsys.readouterr().err
    toy_airline(monkeypatch, "https://example.invalid/Airline.csv")
    empty = env["tmp"] / "empty"
    empty.mkdir()
    assert cli.main(["data", "fetch", "airline", "--from", str(empty)]) == 1
    assert f"airline: airline/Airline.csv is not in --from {empty}" in capsys.readouterr().err
    bad = empty / "airline" / "Airline.csv"
    bad.parent.mkdir()
    bad.write_bytes(TOY.upper())
    assert cli.main(["data", "fetch", "airline", "--from", str(empty)]) == 1
    assert f"the copy from {empty} of airline/Airline.csv does not match" in capsys.readouterr().err
    assert data_files(env["data"]) == []


def test_verify_and_list_detect_a_corrupted_file(env, monkeypatch, capsys):
    file = toy_airline(monkeypatch, serve(env["tmp"], TOY))
    assert cli.main(["data", "fetch", "airline"]) == 0
    assert cli.main(["data", "verify"]) == 0  # missing files are not an error without names
    assert "1 file(s) checked: 1 verified" in capsys.readouterr().out
    assert cli.main(["data", "verify", "airline", "etth1"]) == 1  # a named dataset that is missing is one
    assert "etth1: ett/ETTh1.csv is in none of" in capsys.readouterr().err

    target = env["data"] / file.path
    rewrite(target, TOY.replace(b"112", b"999"))  # same size, other content
    assert cli.main(["data", "verify", "airline"]) == 1
    err = capsys.readouterr().err
    assert f"airline: {target}: sha256" in err and "ssmcast data fetch airline --force" in err
    assert cli.main(["data", "list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("airline "))
    assert "MISMATCH" in line and str(env["data"]) in line

    assert cli.main(["data", "fetch", "airline"]) == 1  # a present file that differs is kept ...
    assert target.read_bytes() != TOY
    assert cli.main(["data", "fetch", "airline", "--force"]) == 0  # ... unless --force
    assert target.read_bytes() == TOY and cli.main(["data", "verify", "airline"]) == 0


def test_list_shows_every_dataset_with_its_place(env, monkeypatch, capsys):
    shared = env["tmp"] / "shared"
    monkeypatch.setenv("SSMCAST_DATA_DIR", str(shared))
    toy_airline(monkeypatch, serve(env["tmp"], TOY))
    assert cli.main(["data", "fetch", "airline", "--dir", str(shared)]) == 0
    capsys.readouterr()
    assert cli.main(["data", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"search order: 1. {shared} ($SSMCAST_DATA_DIR); 2. {env['data']} (checkout data/); "
                      f"3. {env['cache']} (user cache)")  # fmt: skip
    rows = {line.split()[0]: line for line in out[2:-1]}
    assert set(rows) == set(list_datasets())
    assert "verified" in rows["airline"] and f"{shared} ($SSMCAST_DATA_DIR)" in rows["airline"]
    assert "missing" in rows["etth1"] and "2.6 MB" in rows["etth1"]
    assert "bundled" in rows["co2"]
    assert out[-1].startswith("1 verified, 0 not matching")


def test_fetch_all_from_the_shared_data_dir(env, data_dir, capsys):
    """Copies every registry file from $SSMCAST_DATA_DIR's folder (skipped, naming it, when that is missing)."""
    expected = [env["data"] / f.path for name in list_datasets() for f in registry.dataset_info(name).files]
    assert cli.main(["data", "fetch", "--all", "--from", str(data_dir)]) == 0
    assert data_files(env["data"]) == sorted(expected)
    out = capsys.readouterr().out
    assert "co2: bundled with statsmodels" in out and "note:" not in out
    assert cli.main(["data", "verify"]) == 0
    assert f"{len(expected)} file(s) checked: {len(expected)} verified" in capsys.readouterr().out
    assert cli.main(["data", "fetch", "--all", "--from", str(data_dir)]) == 0  # all present: nothing copied
    assert capsys.readouterr().out.count("already present") == len(expected)
