import gzip
import hashlib
import os
import urllib.error
from pathlib import Path

import pandas as pd
import pytest

from ssmcast.datasets import (
    ChecksumError,
    DataFile,
    DatasetNotFoundError,
    Mirror,
    cache_dir,
    dataset_info,
    fetch_file,
    load_dataset,
    sha256_file,
    storage,
)
from ssmcast.datasets.storage import download_file, locate_file, search_dirs

REAL_FETCH = storage._fetch
REAL_CHECKOUT_ROOT = storage.CHECKOUT_ROOT
CONTENT = b"date,OT\n2020-01-01 00:00:00,1.5\n2020-01-01 01:00:00,2.5\n"


def make_file(content: bytes = CONTENT, mirrors=(), path: str = "toy/toy.csv") -> DataFile:
    return DataFile(
        path=path,
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        git_blob="0" * 40,
        mirrors=tuple(mirrors),
    )


def write(root: Path, relative: str, content: bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Isolated data_dir, $SSMCAST_DATA_DIR and cache ($XDG_CACHE_HOME) folders; no network; no checkout data/
    (the `checkout` fixture adds one)."""
    roots = {key: tmp_path / key for key in ("arg", "env", "xdg")}
    for root in roots.values():
        root.mkdir()
    monkeypatch.setattr(storage, "CHECKOUT_ROOT", tmp_path / "not-a-checkout")
    monkeypatch.setenv("SSMCAST_DATA_DIR", str(roots["env"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(roots["xdg"]))

    def no_network(url):
        raise urllib.error.URLError(f"no network in tests ({url})")

    monkeypatch.setattr(storage, "_fetch", no_network)
    roots["cache"] = roots["xdg"] / "ssmcast"
    return roots


@pytest.fixture
def checkout(dirs, tmp_path, monkeypatch):
    """A fake source checkout (pyproject.toml, data/README.md) as the folder above the ssmcast package."""
    root = tmp_path / "repo"
    write(root, "pyproject.toml", b"[project]\nname = 'ssmcast'\n")
    write(root, "data/README.md", b"# data\n")
    monkeypatch.setattr(storage, "CHECKOUT_ROOT", root)
    return root / "data"


def test_the_real_checkout_root_is_the_folder_above_the_package():
    assert REAL_CHECKOUT_ROOT == Path(storage.__file__).resolve().parents[2]
    assert (REAL_CHECKOUT_ROOT / "ssmcast" / "datasets" / "storage.py").is_file()
    if (REAL_CHECKOUT_ROOT / "pyproject.toml").is_file() and (REAL_CHECKOUT_ROOT / "data").is_dir():
        assert storage.checkout_data_dir() == REAL_CHECKOUT_ROOT / "data"


def test_checkout_data_dir_only_in_a_checkout_with_a_data_folder(dirs, tmp_path, monkeypatch):
    root = tmp_path / "site-packages"
    monkeypatch.setattr(storage, "CHECKOUT_ROOT", root)
    write(root, "data/other-package-file.txt", b"x")  # an installed package has no pyproject.toml next to it
    assert storage.checkout_data_dir() is None
    assert storage.default_fetch_dir() == dirs["cache"]
    (root / "data" / "other-package-file.txt").unlink()
    (root / "data").rmdir()
    write(root, "pyproject.toml", b"")  # a checkout whose data/ was deleted
    assert storage.checkout_data_dir() is None
    (root / "data").mkdir()
    assert storage.checkout_data_dir() == root / "data"
    assert storage.default_fetch_dir() == root / "data"


def test_search_order_puts_the_checkout_after_the_env_var_before_the_cache(checkout, dirs, monkeypatch):
    assert search_dirs(dirs["arg"]) == [dirs["arg"], dirs["env"], checkout, dirs["cache"]]
    monkeypatch.delenv("SSMCAST_DATA_DIR")
    assert search_dirs() == [checkout, dirs["cache"]]


def test_lookup_finds_the_checkout_copy_before_the_cache(checkout, dirs):
    file = make_file()
    paths = {key: write(root, file.path, CONTENT) for key, root in (("env", dirs["env"]), ("checkout", checkout),
                                                                     ("cache", dirs["cache"]))}  # fmt: skip
    assert fetch_file(file) == paths["env"]
    paths["env"].unlink()
    assert fetch_file(file) == paths["checkout"]
    paths["checkout"].unlink()
    assert fetch_file(file) == paths["cache"]


def test_a_corrupt_checkout_copy_is_an_error_not_skipped(checkout, dirs):
    file = make_file()
    write(checkout, file.path, CONTENT.replace(b"1.5", b"7.5"))
    write(dirs["cache"], file.path, CONTENT)
    with pytest.raises(ChecksumError, match=str(checkout / file.path)):
        fetch_file(file)


def test_not_found_message_names_the_checkout_and_the_fetch_command(checkout, dirs):
    file = make_file(mirrors=[Mirror("https://example.invalid/toy.csv")])
    with pytest.raises(DatasetNotFoundError) as excinfo:
        fetch_file(file, download=False)
    message = str(excinfo.value)
    assert f"checkout {checkout}" in message and "ssmcast data fetch" in message
    assert str(checkout / file.path) in message  # where to put a manual download
    assert not (dirs["cache"] / file.path).exists()


def test_copy_file_is_verified_and_atomic(dirs, tmp_path):
    file = make_file()
    source = tmp_path / "shared"
    with pytest.raises(DatasetNotFoundError, match="cannot copy toy/toy.csv") as excinfo:
        storage.copy_file(file, source, dirs["arg"])
    assert excinfo.value.failures and str(source / file.path) in excinfo.value.failures[0]
    write(source, file.path, CONTENT + b"extra\n")
    with pytest.raises(ChecksumError, match="nothing copied") as excinfo:
        storage.copy_file(file, source, dirs["arg"])
    assert excinfo.value.mismatches
    assert [p for p in dirs["arg"].rglob("*") if p.is_file()] == []
    write(source, file.path, CONTENT)
    assert storage.copy_file(file, source, dirs["arg"]) == dirs["arg"] / file.path
    assert (dirs["arg"] / file.path).read_bytes() == CONTENT
    assert sorted(p.name for p in (dirs["arg"] / "toy").iterdir()) == ["toy.csv"]
    assert storage.copy_file(file, dirs["arg"], dirs["arg"]) == dirs["arg"] / file.path  # onto itself: a check


def test_download_errors_carry_the_mirrors_tried(dirs, monkeypatch):
    file = make_file(mirrors=[Mirror("https://example.invalid/a.csv"), Mirror("https://example.invalid/b.csv")])
    with pytest.raises(DatasetNotFoundError) as excinfo:
        download_file(file, dirs["arg"])
    assert [f.split(": ")[0] for f in excinfo.value.failures] == list(file.urls)
    monkeypatch.setattr(storage, "_fetch", lambda url: b"garbage")
    with pytest.raises(ChecksumError) as excinfo:
        download_file(file, dirs["arg"])
    assert len(excinfo.value.mismatches) == 2 and excinfo.value.failures == ()


def test_cache_dir_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "ssmcast"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ssmcast"


def test_search_dirs_order(dirs, monkeypatch):
    assert search_dirs(dirs["arg"]) == [dirs["arg"], dirs["env"], dirs["cache"]]
    assert search_dirs() == [dirs["env"], dirs["cache"]]
    monkeypatch.delenv("SSMCAST_DATA_DIR")
    assert search_dirs(str(dirs["arg"])) == [dirs["arg"], dirs["cache"]]
    with pytest.raises(ValueError, match="data_dir=.*is not a directory"):
        search_dirs(dirs["arg"] / "missing")
    with pytest.raises(TypeError, match="data_dir must be a path"):
        search_dirs(3)


def test_lookup_order_data_dir_then_env_then_cache(dirs):
    file = make_file()
    paths = {key: write(dirs[key], file.path, CONTENT) for key in ("arg", "env", "cache")}
    assert fetch_file(file, dirs["arg"]) == paths["arg"]
    paths["arg"].unlink()
    assert fetch_file(file, dirs["arg"]) == paths["env"]
    paths["env"].unlink()
    assert fetch_file(file, dirs["arg"]) == paths["cache"]
    assert locate_file(file) == paths["cache"]
    paths["cache"].unlink()
    assert locate_file(file, dirs["arg"]) is None
    with pytest.raises(DatasetNotFoundError):
        fetch_file(file, dirs["arg"])


def test_local_checksum_mismatch_raises_unless_verify_is_off(dirs):
    file = make_file()
    bad = CONTENT.replace(b"1.5", b"9.5")
    path = write(dirs["env"], file.path, bad)
    with pytest.raises(ChecksumError, match="sha256 .* expected " + file.sha256):
        fetch_file(file)
    assert fetch_file(file, verify=False) == path
    path.write_bytes(CONTENT[:-5])
    with pytest.raises(ChecksumError, match=f"size {len(CONTENT) - 5} bytes, expected {len(CONTENT)}"):
        fetch_file(file)
    assert path.exists()  # the user's own files are never deleted


def test_rewritten_file_is_hashed_again(dirs):
    file = make_file()
    path = write(dirs["env"], file.path, CONTENT)
    assert fetch_file(file) == path
    path.write_bytes(CONTENT.replace(b"1.5", b"9.5"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(ChecksumError):
        fetch_file(file)


def test_download_from_file_url_into_cache(dirs, tmp_path, monkeypatch):
    source = write(tmp_path / "server", "toy.csv", CONTENT)
    file = make_file(mirrors=[Mirror(source.as_uri())])
    monkeypatch.setattr(storage, "_fetch", REAL_FETCH)  # real urllib; file:// needs no network
    path = fetch_file(file)
    assert path == dirs["cache"] / file.path
    assert path.read_bytes() == CONTENT
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy.csv"]  # no temporary files left
    source.unlink()  # a second call is served from the cache
    assert fetch_file(file) == path


def test_gzip_crlf_mirror_after_an_unreachable_one(dirs, tmp_path, monkeypatch):
    served = {"https://example.invalid/toy.csv.gz": gzip.compress(CONTENT.replace(b"\n", b"\r\n"))}
    calls = []

    def fake_fetch(url):
        calls.append(url)
        if url not in served:
            raise urllib.error.URLError("unreachable")
        return served[url]

    monkeypatch.setattr(storage, "_fetch", fake_fetch)
    file = make_file(
        mirrors=[
            Mirror("https://example.invalid/down.csv"),
            Mirror("https://example.invalid/toy.csv.gz", compression="gzip", crlf_to_lf=True),
        ]
    )
    path = fetch_file(file)
    assert path.read_bytes() == CONTENT and sha256_file(path) == file.sha256
    assert calls == [m.url for m in file.mirrors]


def test_crlf_conversion_matches_sed():
    mirror = Mirror("x", crlf_to_lf=True)
    assert storage._decode(b"a,b\r\n1,2\r\n", mirror) == b"a,b\n1,2\n"
    assert storage._decode(b"a\r\nb\r", mirror) == b"a\nb"  # sed 's/\r$//' also strips a last \r
    assert storage._decode(b"a\rb\r\n", mirror) == b"a\rb\n"  # an inner \r is kept


def test_download_checksum_mismatch_deletes_partial_file(dirs, monkeypatch):
    monkeypatch.setattr(storage, "_fetch", lambda url: CONTENT + b"tampered\n")
    file = make_file(mirrors=[Mirror("https://example.invalid/toy.csv")])
    with pytest.raises(ChecksumError, match="does not match its checksum.*partial file was deleted"):
        fetch_file(file)
    target = dirs["cache"] / file.path
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_checksum_error_when_one_mirror_is_wrong_and_the_other_down(dirs, monkeypatch):
    def fetch(url):
        if "good" in url:
            raise urllib.error.URLError("down")
        return b"garbage"

    monkeypatch.setattr(storage, "_fetch", fetch)
    file = make_file(mirrors=[Mirror("https://example.invalid/bad"), Mirror("https://example.invalid/good")])
    with pytest.raises(ChecksumError, match="example.invalid/bad.*example.invalid/good: URLError"):
        download_file(file)


def test_offline_error_names_env_var_path_and_url(dirs):
    file = make_file(mirrors=[Mirror("https://example.invalid/toy.csv")])
    with pytest.raises(DatasetNotFoundError) as excinfo:
        fetch_file(file, dirs["arg"])
    message = str(excinfo.value)
    assert isinstance(excinfo.value, FileNotFoundError)
    for expected in (
        "SSMCAST_DATA_DIR",
        str(dirs["env"]),
        "toy/toy.csv",
        str(dirs["cache"] / "toy/toy.csv"),
        "https://example.invalid/toy.csv",
        "no network in tests",
        f"data_dir='{dirs['arg']}'",
    ):
        assert expected in message
    assert not (dirs["cache"] / file.path).exists()


def test_download_disabled_error(dirs, monkeypatch):
    monkeypatch.delenv("SSMCAST_DATA_DIR")
    file = make_file(mirrors=[Mirror("https://example.invalid/toy.gz", compression="gzip")])
    with pytest.raises(DatasetNotFoundError, match=r"SSMCAST_DATA_DIR \(not set\)") as excinfo:
        fetch_file(file, download=False)
    assert "download=False" in str(excinfo.value)
    assert "https://example.invalid/toy.gz (gunzip)" in str(excinfo.value)


def test_load_dataset_downloads_real_file_into_cache(dirs, data_dir, monkeypatch):
    """End to end with the registry entry of the airline file, served from the shared copy."""
    monkeypatch.delenv("SSMCAST_DATA_DIR")
    info = dataset_info("airline")
    (url,) = info.files[0].urls
    monkeypatch.setattr(storage, "_fetch", {url: (data_dir / "airline/Airline.csv").read_bytes()}.__getitem__)
    df = load_dataset("airline")
    assert (dirs["cache"] / "airline/Airline.csv").is_file()
    pd.testing.assert_frame_equal(df, load_dataset("airline", data_dir))


def test_weather_gzip_mirror_reproduces_the_checksum(dirs, data_dir, monkeypatch):
    """The HiCR-Mamba copy is a gzip of a CRLF file; decompressing and converting gives our file."""
    monkeypatch.delenv("SSMCAST_DATA_DIR")
    weather = dataset_info("weather").files[0]
    gz_mirror = next(m for m in weather.mirrors if m.compression == "gzip")
    crlf = (data_dir / weather.path).read_bytes().replace(b"\n", b"\r\n")
    assert hashlib.sha1(b"blob %d\0" % len(crlf) + crlf).hexdigest().startswith("490cacf7")
    served = {gz_mirror.url: gzip.compress(crlf, compresslevel=1)}
    monkeypatch.setattr(storage, "_fetch", served.__getitem__)
    path = download_file(weather)
    assert path == dirs["cache"] / "weather/weather.csv"
    assert sha256_file(path) == weather.sha256
