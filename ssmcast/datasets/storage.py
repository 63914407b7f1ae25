"""Finding, downloading and checksumming dataset files.

Lookup order for a file with relative path `p` (e.g. `ett/ETTh1.csv`):

1. `data_dir/p` (the `data_dir=` argument),
2. `$SSMCAST_DATA_DIR/p`,
3. `<checkout>/data/p`: the `data/` folder of a source checkout (the folder holding `pyproject.toml` and the
   `ssmcast` package), searched only when it exists; `ssmcast data fetch` / `make data` fill it,
4. the user cache `$XDG_CACHE_HOME/ssmcast/p` (default `~/.cache/ssmcast/p`).

If none exists the file is downloaded from its mirrors into the cache, decompressed/normalised as the
mirror says, and kept only if its sha256 matches the registry. Data files are never committed: `.gitignore`
keeps everything under `data/` except `data/README.md` out of git.
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
    "CHECKOUT_ROOT",
    "ENV_VAR",
    "ChecksumError",
    "DatasetNotFoundError",
    "cache_dir",
    "checkout_data_dir",
    "copy_file",
    "default_fetch_dir",
    "download_file",
    "fetch_file",
    "locate_file",
    "search_dirs",
    "sha256_file",
    "verify_file",
]

ENV_VAR = "SSMCAST_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 60.0
# the folder above the `ssmcast` package: the repository root in a source checkout (tests monkeypatch it)
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


class ChecksumError(ValueError):
    """A data file's sha256 (or size) differs from the registry.

    Raised by a download or copy, it has `failures` (mirrors that could not be read) and `mismatches`
    (mirrors that delivered other content), each a tuple of ``"<url>: <cause>"`` strings."""

    failures: tuple[str, ...] = ()
    mismatches: tuple[str, ...] = ()


class DatasetNotFoundError(FileNotFoundError):
    """A data file is in none of the search directories and could not be downloaded.

    Raised by a download, `failures` lists the mirrors tried as ``"<url>: <cause>"`` strings."""

    failures: tuple[str, ...] = ()
    mismatches: tuple[str, ...] = ()


def cache_dir() -> Path:
    """The user cache for downloads: `$XDG_CACHE_HOME/ssmcast`, else `~/.cache/ssmcast`."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "ssmcast"


def checkout_data_dir() -> Path | None:
    """`<checkout>/data` when ssmcast runs from a source checkout, else None.

    A checkout is recognised by `pyproject.toml` next to the `ssmcast` package and an existing `data/`
    folder (it holds the committed `data/README.md`); an installed package (site-packages) has neither."""
    path = CHECKOUT_ROOT / "data"
    if (CHECKOUT_ROOT / "pyproject.toml").is_file() and path.is_dir():
        return path
    return None


def default_fetch_dir() -> Path:
    """Where `ssmcast data fetch` puts files: the checkout's `data/` folder, else the user cache."""
    return checkout_data_dir() or cache_dir()


def search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched, in order: `data_dir`, `$SSMCAST_DATA_DIR`, the checkout's `data/`, the cache.

    `data_dir` must be an existing directory; the checkout's `data/` is listed only in a source checkout
    where it exists (`checkout_data_dir()`); `$SSMCAST_DATA_DIR` and the cache are listed even when missing.
    """
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
    checkout = checkout_data_dir()
    if checkout is not None:
        dirs.append(checkout)
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


def _install(data: bytes, file: DataFile, target: Path) -> str | None:
    """Write `data` to a temporary file next to `target` and rename it into place if its size and sha256
    are the registry's; else write nothing and return what differs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    actual = hashlib.sha256(data).hexdigest()
    if actual != file.sha256 or len(data) != file.size:
        return f"sha256 {actual} ({len(data)} bytes), expected {file.sha256} ({file.size} bytes)"
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False)
    part = Path(handle.name)
    try:
        with handle:
            handle.write(data)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return None


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
        mismatch = _install(data, file, target)
        if mismatch is None:
            return True, failures, mismatches
        mismatches.append(f"{mirror.url}: {mismatch}")
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


def copy_file(file: DataFile, source_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Copy `source_dir/<file.path>` into `root/<file.path>` (default root: the cache), verified.

    Like `download_file` with the local folder as the only mirror: the copy is written to a temporary file
    next to the target and renamed into place only if size and sha256 match the registry. Raises
    `DatasetNotFoundError` if the source file does not exist and `ChecksumError` if it differs.
    """
    source = Path(source_dir).expanduser() / file.path
    target = Path(root if root is not None else cache_dir()) / file.path
    try:
        data = source.read_bytes()
    except OSError as error:
        failure = f"{source}: {type(error).__name__}: {error.strerror or error}"
        _raise_with(DatasetNotFoundError(f"cannot copy {file.path}: {failure}"), [failure], [])
    if source.resolve() == target.resolve():
        verify_file(source, file)  # copying a file onto itself: just check it
        return target
    mismatch = _install(data, file, target)
    if mismatch is not None:
        _raise_with(ChecksumError(f"{source} does not match its checksum, nothing copied: {mismatch}"),
                    [], [f"{source}: {mismatch}"])  # fmt: skip
    return target


def _raise_with(error: ChecksumError | DatasetNotFoundError, failures: list[str], mismatches: list[str]):
    error.failures, error.mismatches = tuple(failures), tuple(mismatches)
    raise error


def _raise_download_error(file: DataFile, data_dir, failures: list[str], mismatches: list[str]):
    if mismatches:
        _raise_with(
            ChecksumError(
                f"downloaded {file.path} does not match its checksum (the partial file was deleted): "
                + "; ".join(mismatches + failures)
            ),
            failures,
            mismatches,
        )
    _raise_with(DatasetNotFoundError(_not_found_message(file, data_dir, failures)), failures, mismatches)


def _describe(mirror: Mirror) -> str:
    steps = (["gunzip"] if mirror.compression == "gzip" else []) + (["CRLF->LF"] if mirror.crlf_to_lf else [])
    return mirror.url + (f" ({', then '.join(steps)})" if steps else "")


def _not_found_message(file: DataFile, data_dir, failures: list[str]) -> str:
    env = os.environ.get(ENV_VAR)
    looked = []
    if data_dir is not None:
        looked.append(f"data_dir={str(data_dir)!r}")
    looked.append(f"${ENV_VAR}={env!r}" if env else f"${ENV_VAR} (not set)")
    checkout = checkout_data_dir()
    if checkout is not None:
        looked.append(f"checkout {checkout}")
    looked.append(f"cache {cache_dir()}")
    lines = [
        f"data file {file.path!r} not found; looked in: {', '.join(looked)}.",
        f"Set {ENV_VAR} to a directory containing {file.path} (or pass data_dir=), run `ssmcast data fetch "
        f"--all` (`--from DIR` copies from a local folder), or download "
        f"{' or '.join(_describe(m) for m in file.mirrors)} to {default_fetch_dir() / file.path}.",
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
