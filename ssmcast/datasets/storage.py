"""Finding, downloading and checksumming dataset files.

Lookup order for a file with relative path `p` (e.g. `ett/ETTh1.csv`):
`data_dir/p`, then `$SSMCAST_DATA_DIR/p`, then the user cache `$XDG_CACHE_HOME/ssmcast/p`
(default `~/.cache/ssmcast/p`). If none exists the file is downloaded from its mirrors into the cache,
decompressed/normalised as the mirror says, and kept only if its sha256 matches the registry.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
import urllib.request
from pathlib import Path

from .registry import DataFile, Mirror

__all__ = [
    "ENV_VAR",
    "ChecksumError",
    "DatasetNotFoundError",
    "cache_dir",
    "download_file",
    "fetch_file",
    "locate_file",
    "search_dirs",
    "sha256_file",
    "verify_file",
]

ENV_VAR = "SSMCAST_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 60.0


class ChecksumError(ValueError):
    """A data file's sha256 (or size) differs from the registry."""


class DatasetNotFoundError(FileNotFoundError):
    """A data file is in none of the search directories and could not be downloaded."""


def cache_dir() -> Path:
    """The user cache for downloads: `$XDG_CACHE_HOME/ssmcast`, else `~/.cache/ssmcast`."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "ssmcast"


def search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched, in order: `data_dir`, `$SSMCAST_DATA_DIR`, the cache."""
    dirs = []
    if data_dir is not None:
        if not isinstance(data_dir, str | os.PathLike):
            raise TypeError(f"data_dir must be a path or None, got {type(data_dir).__name__}")
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise ValueError(f"data_dir={str(data_dir)!r} is not a directory")
        dirs.append(path)
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir())
    return dirs


def locate_file(file: DataFile, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first existing `<dir>/<file.path>` over `search_dirs(data_dir)`, or None."""
    for directory in search_dirs(data_dir):
        candidate = directory / file.path
        if candidate.is_file():
            return candidate
    return None


_hash_memo: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (memoised per path, size and modification time)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_memo:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _hash_memo[key] = digest.hexdigest()
    return _hash_memo[key]


def verify_file(path: str | os.PathLike, file: DataFile) -> None:
    """Raise `ChecksumError` unless `path` has the size and sha256 the registry gives for `file`."""
    size = os.stat(path).st_size
    if size != file.size:
        raise ChecksumError(
            f"{path}: size {size} bytes, expected {file.size} for {file.path}; the file is truncated or "
            "a different version: delete it (it will be downloaded again) or pass verify=False"
        )
    actual = sha256_file(path)
    if actual != file.sha256:
        raise ChecksumError(
            f"{path}: sha256 {actual}, expected {file.sha256} for {file.path}; delete it (it will be "
            "downloaded again) or pass verify=False"
        )


def _fetch(url: str) -> bytes:
    """Download `url` (http(s) or file://) and return its bytes. Tests monkeypatch this."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def _decode(data: bytes, mirror: Mirror) -> bytes:
    if mirror.compression == "gzip":
        data = gzip.decompress(data)
    elif mirror.compression is not None:
        raise ValueError(f"unknown compression {mirror.compression!r} for {mirror.url}")
    if mirror.crlf_to_lf:
        data = re.sub(rb"\r(?=\n|\Z)", b"", data)  # what `sed 's/\r$//'` does
    return data


def _download(file: DataFile, target: Path) -> tuple[bool, list[str], list[str]]:
    """Try each mirror; returns (success, unreachable-mirror messages, checksum-mismatch messages)."""
    failures: list[str] = []
    mismatches: list[str] = []
    for mirror in file.mirrors:
        try:
            data = _decode(_fetch(mirror.url), mirror)
        except (OSError, EOFError) as error:  # URLError and BadGzipFile are OSErrors
            failures.append(f"{mirror.url}: {type(error).__name__}: {error}")
            continue
        actual = hashlib.sha256(data).hexdigest()
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False)
        part = Path(handle.name)
        try:
            with handle:
                handle.write(data)
            if actual == file.sha256 and len(data) == file.size:
                os.replace(part, target)
                return True, failures, mismatches
            mismatches.append(
                f"{mirror.url}: sha256 {actual} ({len(data)} bytes), "
                f"expected {file.sha256} ({file.size} bytes)"
            )
        finally:
            part.unlink(missing_ok=True)
    return False, failures, mismatches


def download_file(file: DataFile, root: str | os.PathLike | None = None) -> Path:
    """Download `file` into `root/<file.path>` (default root: the cache) and verify its sha256.

    Mirrors are tried in order. The data is written to a temporary file next to the target and
    renamed into place only once size and checksum match; on a mismatch the temporary file is deleted.
    Raises `ChecksumError` if a mirror delivered wrong content and no mirror succeeded,
    `DatasetNotFoundError` if no mirror could be reached.
    """
    target = Path(root if root is not None else cache_dir()) / file.path
    ok, failures, mismatches = _download(file, target)
    if not ok:
        _raise_download_error(file, None, failures, mismatches)
    return target


def _raise_download_error(file: DataFile, data_dir, failures: list[str], mismatches: list[str]):
    if mismatches:
        raise ChecksumError(
            f"downloaded {file.path} does not match its checksum (the partial file was deleted): "
            + "; ".join(mismatches + failures)
        )
    raise DatasetNotFoundError(_not_found_message(file, data_dir, failures))


def _describe(mirror: Mirror) -> str:
    steps = (["gunzip"] if mirror.compression == "gzip" else []) + (["CRLF->LF"] if mirror.crlf_to_lf else [])
    return mirror.url + (f" ({', then '.join(steps)})" if steps else "")


def _not_found_message(file: DataFile, data_dir, failures: list[str]) -> str:
    env = os.environ.get(ENV_VAR)
    looked = []
    if data_dir is not None:
        looked.append(f"data_dir={str(data_dir)!r}")
    looked.append(f"${ENV_VAR}={env!r}" if env else f"${ENV_VAR} (not set)")
    looked.append(f"cache {cache_dir()}")
    lines = [
        f"data file {file.path!r} not found; looked in: {', '.join(looked)}.",
        f"Set {ENV_VAR} to a directory containing {file.path} (or pass data_dir=), or download "
        f"{' or '.join(_describe(m) for m in file.mirrors)} to {cache_dir() / file.path}.",
    ]
    if failures:
        lines.append("Download failed: " + "; ".join(failures))
    else:
        lines.append("Download was disabled (download=False).")
    return "\n".join(lines)


def fetch_file(
    file: DataFile,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    verify: bool = True,
) -> Path:
    """Path of `file`: found over `search_dirs(data_dir)`, else downloaded into the cache.

    A file found locally is checked against the registry's size and sha256 when `verify` is true
    (hashes are memoised, so repeated loads cost one `stat`). Raises `DatasetNotFoundError` (a
    `FileNotFoundError`) naming `SSMCAST_DATA_DIR`, the expected path and the URLs when the file is
    missing and cannot be downloaded, and `ChecksumError` (a `ValueError`) on a checksum mismatch.
    """
    path = locate_file(file, data_dir)
    if path is None:
        if not download:
            raise DatasetNotFoundError(_not_found_message(file, data_dir, []))
        target = cache_dir() / file.path
        ok, failures, mismatches = _download(file, target)
        if not ok:
            _raise_download_error(file, data_dir, failures, mismatches)
        return target
    if verify:
        verify_file(path, file)
    return path
