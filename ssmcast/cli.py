"""The ``ssmcast`` command line: sub-commands on top of one Hydra app (configs in ``conf/``).

    ssmcast train                                   # the main job: Mamba vs seasonal ARIMA on weekly CO2
    ssmcast train model=s4 data=etth1 horizon=96    # any Hydra override; --cfg job prints the config
    ssmcast compare models=[mamba,s4,auto_arima,ets] data=airline
    ssmcast train --multirun model=s4,s5,mamba seed=0,1,2
    ssmcast ui                                      # the MLflow UI on 127.0.0.1 against ./mlflow.db
    ssmcast sync outputs/2026-12-07/10-00-00        # push a run the tracking server missed

Heavy libraries (torch, lightning, mlflow) are imported inside the jobs, so ``--help`` answers at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

COMMANDS = ("train", "compare", "ui", "sync", "data")
CONFIG_ENV = "SSMCAST_CONFIG_DIR"

USAGE = """usage: ssmcast <command> [hydra overrides...] [--multirun] [hydra flags]

Forecasting with structured state space models (S4, S4D, S5, Mamba, Mamba-2, Jamba) and classical
Kalman-filter baselines; every run is tracked in MLflow.

commands:
  train     fit `model` (and the `baselines`) and evaluate on the test part
            (no overrides: a small Mamba vs the seasonal ARIMA baseline on weekly Mauna Loa CO2)
  compare   backtest every model of `models` on the same windows and print the leaderboard
  ui        start the MLflow UI on 127.0.0.1 against the tracking store (default ./mlflow.db)
  sync      push a finished run folder into a tracking store (a run whose server was away: exit status 3)
  data      list, fetch (download or copy, sha256-verified) and verify the benchmark datasets; `fetch`
            fills data/ of the source checkout (else the user cache): see data/README.md

examples:
  ssmcast train model=s4 data=etth1 horizon=96
  ssmcast train experiment=ltsf_etth1_96 model=s5 trainer=gpu
  ssmcast train data=csv data.path=sales.csv data.time_col=date data.target_col=units horizon=14
  ssmcast compare models=[mamba,s4,s5,auto_arima,ets] data=airline n_windows=3
  ssmcast train --multirun model=s4,s5,mamba seed=0,1,2
  ssmcast train --multirun hydra/sweeper=tune            # Optuna (pip install hydra-optuna-sweeper)
  ssmcast train --multirun hydra/launcher=joblib model=s4,s5   # parallel jobs (hydra-joblib-launcher)
  ssmcast train trainer=ddp                               # data-parallel training on every GPU
  ssmcast train tracking.uri=http://127.0.0.1:5000        # or MLFLOW_TRACKING_URI; tracking=none: off
  ssmcast ui --port 5000
  ssmcast sync <run dir> [--tracking-uri URI] [--experiment NAME] [--force]
  ssmcast data list                                       # every dataset: present where, verified or not
  ssmcast data fetch etth1 weather                        # or --all (= make data); --from DIR copies
  ssmcast data verify                                     # check the sha256 of every file present

`ssmcast <command> --help` lists the config groups and options (Hydra's help); `--cfg job` prints the
composed config. Config groups: model, data, trainer, tracking, experiment (conf/ in the source tree,
or $SSMCAST_CONFIG_DIR). Errors show one line; HYDRA_FULL_ERROR=1 shows the traceback.
"""


def config_dir() -> Path:
    """``$SSMCAST_CONFIG_DIR``, else ``conf/`` next to the ``ssmcast`` package (the source checkout)."""
    path = Path(os.environ.get(CONFIG_ENV) or Path(__file__).resolve().parents[1] / "conf")
    if not (path / "config.yaml").is_file():
        raise SystemExit(f"ssmcast: error: no config.yaml in {path} (set {CONFIG_ENV} to the conf/ directory)")
    return path


def _multirun_job() -> tuple[int, str] | None:
    """``(job number, output dir)`` inside a ``--multirun`` job, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # not inside a Hydra app
        return None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return int(hydra_cfg.job.num), hydra_cfg.runtime.output_dir


def _task(cfg) -> float | None:
    """The Hydra task: one train/compare job; data and config problems end with a one-line error.

    In a ``--multirun`` a failing job does not stop the sweep: its error is printed and recorded (a FAILED child
    run with the error; the sweep's summary and its parent run), and the next job runs."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import OmegaConfBaseException

    from ssmcast import tracking
    from ssmcast.datasets import DatasetNotFoundError
    from ssmcast.jobs import run

    expected = (ValueError, TypeError, FileNotFoundError, DatasetNotFoundError, InstantiationException,
                OmegaConfBaseException)  # fmt: skip
    job = _multirun_job()
    tracking.reset_job()
    try:
        return run(cfg)
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not (isinstance(err, expected) or job is not None):
            raise
        message = str(err).strip().splitlines()
        where = f"job #{job[0]}: " if job is not None else ""
        print(f"ssmcast: error: {where}{type(err).__name__}: {' '.join(message)[:2000]}", file=sys.stderr)
        print("(set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
        if job is not None:
            tracking.record_sweep_failure(cfg, job[0], err, job[1])
            return None
        raise SystemExit(1) from None


def _with_override(args: list[str], override: str) -> list[str]:
    """``args`` with ``override`` put just before the first ``key=value`` override, so that the overrides stay
    one run of positional words (as argparse needs) however the Hydra flags are placed (``model=s4 --cfg job``)."""
    i = next((i for i, word in enumerate(args) if "=" in word and not word.startswith("-")), len(args))
    return [*args[:i], override, *args[i:]]


def run_hydra(command: str, args: list[str]) -> int:
    """Run the Hydra app with ``args`` (overrides and Hydra flags) for ``command``."""
    import hydra

    app = hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(_task)
    if not any(a.startswith("command=") for a in args):  # also what Lightning's DDP re-launch of sys.argv sees
        args = _with_override(args, f"command={command}")
    from ssmcast import tracking

    old = sys.argv
    sys.argv = [old[0] if old else "ssmcast", *args]
    seen = len(tracking.untracked_runs())
    try:
        app()
    except SystemExit as stop:
        if _stopped_by_sigterm(stop):
            print("ssmcast: error: the run was stopped by SIGTERM before it finished; its run folder keeps what it "
                  "wrote (error.txt) and its MLflow run is marked FAILED", file=sys.stderr)
            return 128 + signal.SIGTERM
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        sys.argv = old
    failures = tracking.sweep_failures()
    if failures:
        print(f"ssmcast: error: {len(failures)} job(s) of the sweep failed: "
              + "; ".join(f"#{job} {text[:200]}" for job, text in failures), file=sys.stderr)  # fmt: skip
        return 1
    untracked = [(folder, uri) for folder, uri, required in tracking.untracked_runs()[seen:] if required]
    if untracked:
        print(f"ssmcast: error: {len(untracked)} run(s) finished but were not (fully) tracked in MLflow at "
              f"{untracked[0][1]}; their outputs are complete on disk. Push them when the store is back with: "
              + "; ".join(f"ssmcast sync {folder}" for folder, _ in untracked)
              + " (tracking.required=false: exit 0 in this case)", file=sys.stderr)  # fmt: skip
        return UNTRACKED_EXIT
    return 0


UNTRACKED_EXIT = 3  # the run's work is done and on disk, but the tracking store did not get it


def _stopped_by_sigterm(stop: SystemExit) -> bool:
    """Lightning turns SIGTERM during a fit into ``SIGTERMException``, a ``SystemExit`` without a code, which would
    exit 0: a stopped run must not look like a finished one to a scheduler or a shell."""
    exceptions = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return exceptions is not None and isinstance(stop, exceptions.SIGTERMException)


def sync(args: list[str]) -> int:
    """``ssmcast sync <run dir>... [--tracking-uri URI] [--experiment NAME] [--force]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="ssmcast sync",
        description="Push finished run folders (their tracking/run.json, artifacts, models and epoch metrics) "
                    "into an MLflow tracking store, e.g. after the server was away during the run.",
    )  # fmt: skip
    parser.add_argument("run_dirs", nargs="+", metavar="run_dir")
    parser.add_argument("--tracking-uri", default=None,
                        help="default: the URI the run was meant for (then $MLFLOW_TRACKING_URI, ./mlflow.db)")
    parser.add_argument("--experiment", default=None, help="default: the run's experiment")
    parser.add_argument("--force", action="store_true",
                        help="push a run already in that store again, or one that never finished (as KILLED)")
    options = parser.parse_args(args)
    from ssmcast.tracking import SyncError, sync_run

    code = 0
    for run_dir in options.run_dirs:
        try:
            run_id = sync_run(run_dir, options.tracking_uri, options.experiment, force=options.force)
        except SyncError as err:
            print(f"ssmcast: error: {err}", file=sys.stderr)
            code = 1
            continue
        except Exception as err:  # noqa: BLE001 - a store that fails midway: one line, the next folder
            print(f"ssmcast: error: {run_dir}: the push failed ({type(err).__name__}: {err})", file=sys.stderr)
            code = 1
            continue
        print(f"{run_dir}: pushed as run {run_id}")
    return code


def ui(args: list[str]) -> int:
    """``ssmcast ui [--port N] [--backend-store-uri URI]``: a light MLflow server on 127.0.0.1."""
    import argparse

    from ssmcast.tracking import tracking_uri

    parser = argparse.ArgumentParser(prog="ssmcast ui", description="Start the MLflow UI on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--backend-store-uri", default=None,
                        help="default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db")
    parser.add_argument("--workers", type=int, default=1)
    options = parser.parse_args(args)
    uri = tracking_uri(options.backend_store_uri)
    if uri.startswith(("http://", "https://")):
        print(f"ssmcast: error: the tracking URI {uri} is already a server: open it in a browser", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(options.port), "--workers", str(options.workers)]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    print(f"MLflow UI on http://127.0.0.1:{options.port} (store {uri}); stop it with Ctrl-C or "
          f"kill -TERM {os.getpid()}", flush=True)
    return _serve(command, env)


def _serve(command: list[str], env: dict) -> int:
    """Run the server in a process group of its own and forward SIGTERM/SIGINT/SIGHUP to the whole group (the
    server and its workers), then wait for it: stopping ``ssmcast ui`` leaves nothing listening."""
    import signal

    server = subprocess.Popen(command, env=env, start_new_session=True)
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:  # already gone
            pass

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while True:
            try:
                code = server.wait(timeout=30 if stopping else None)
                break
            except subprocess.TimeoutExpired:  # the group ignored SIGTERM for 30 s
                os.killpg(server.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping else code


def data(args: list[str]) -> int:
    """``ssmcast data list | fetch NAME... | --all [--dir DIR] [--from DIR] [--force] | verify [NAME...]``.

    Works on the registry's files (``ssmcast.datasets.registry``) with ``ssmcast.datasets.storage``'s search order,
    download and copy (a temporary file renamed into place only when size and sha256 match). Exit status: 0 done,
    1 a file could not be fetched or does not verify, 2 a usage error (e.g. an unknown dataset name)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="ssmcast data",
        description="The benchmark datasets. Files are searched in --dir, $SSMCAST_DATA_DIR, data/ of the source "
                    "checkout, then the user cache; `fetch` fills data/ of the checkout (else the cache).",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="action", required=True, metavar="{list,fetch,verify}")
    listing = actions.add_parser("list", help="every dataset and file: size, where it is, verified or not")
    fetch = actions.add_parser("fetch", help="download (or copy --from a folder) and verify datasets")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="dataset names (see ssmcast data list)")
    fetch.add_argument("--all", action="store_true", help="every dataset of the registry")
    fetch.add_argument("--from", dest="source", default=None, metavar="DIR",
                       help="copy from this local folder (e.g. a shared data directory) instead of the network")
    fetch.add_argument("--force", action="store_true", help="replace a present file that does not verify")
    verify = actions.add_parser("verify", help="check the size and sha256 of every copy present")
    verify.add_argument("names", nargs="*", metavar="NAME", help="default: every dataset")
    for sub, text in ((listing, "search this folder first"), (verify, "search this folder first"),
                      (fetch, "put the files here (default: data/ of the checkout, else the user cache)")):
        sub.add_argument("--dir", default=None, metavar="DIR", help=text)  # fmt: skip
    try:
        options = parser.parse_args(args)
    except SystemExit as stop:  # --help or a usage error: a status, also when called in-process
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)

    from ssmcast.datasets import registry

    known = registry.list_datasets()
    named = list(dict.fromkeys(name.lower() for name in getattr(options, "names", [])))  # as given, once each
    unknown = [name for name in named if name not in known]
    if unknown:
        _data_error(f"data {options.action}: unknown dataset(s) {', '.join(map(repr, unknown))}; "
                    f"known: {', '.join(known)}")  # fmt: skip
        return 2
    if options.action == "fetch" and not named and not options.all:
        _data_error("data fetch: name the datasets to fetch (see ssmcast data list) or pass --all")
        return 2
    directory = Path(options.dir).expanduser() if options.dir else None
    if options.action != "fetch" and directory is not None and not directory.is_dir():
        _data_error(f"data {options.action}: --dir {directory} is not a directory")
        return 2
    infos = [registry.dataset_info(name) for name in (known if options.action == "fetch" and options.all else
                                                      named or known)]  # fmt: skip
    if options.action == "list":
        return _data_list(infos, directory)
    if options.action == "verify":
        return _data_verify(infos, directory, required=bool(named))
    source = Path(options.source).expanduser() if options.source else None
    if source is not None and not source.is_dir():
        _data_error(f"data fetch: --from {source} is not a directory")
        return 2
    return _data_fetch(infos, directory, source, force=options.force)


def _data_error(message: str) -> None:
    print(f"ssmcast: error: {' '.join(str(message).split())}", file=sys.stderr)  # one line


def _data_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _data_mismatch(name: str, err: Exception) -> str:
    """``verify_file``'s message (path, what differs) with the command that repairs it."""
    return f"{name}: {str(err).split('; ')[0]}; replace it with `ssmcast data fetch {name} --force`"


def _data_dirs(directory: Path | None) -> list[tuple[Path, str]]:
    """``storage.search_dirs(directory)``, each with what it is."""
    from ssmcast.datasets import storage

    labels = {storage.cache_dir(): "user cache"}
    if storage.checkout_data_dir() is not None:
        labels[storage.checkout_data_dir()] = "checkout data/"
    if os.environ.get(storage.ENV_VAR):
        labels[Path(os.environ[storage.ENV_VAR]).expanduser()] = f"${storage.ENV_VAR}"
    if directory is not None:
        labels[directory] = "--dir"
    return [(path, labels.get(path, "")) for path in storage.search_dirs(directory)]


def _data_list(infos: list, directory: Path | None) -> int:
    from ssmcast.datasets import storage

    dirs = _data_dirs(directory)
    print("search order: " + "; ".join(f"{i}. {path} ({label})" for i, (path, label) in enumerate(dirs, 1)))
    print(f"{'dataset':<14} {'file':<32} {'size':>8}  {'status':<9} where")
    counts = {"verified": 0, "MISMATCH": 0, "missing": 0}
    for info in infos:
        if info.source == "statsmodels":
            print(f"{info.name:<14} {'(bundled with statsmodels)':<32} {'-':>8}  {'bundled':<9} statsmodels")
        for file in info.files:
            where, status = "", "missing"
            for path, label in dirs:
                if (path / file.path).is_file():
                    where, status = f"{path} ({label})", "verified"
                    try:
                        storage.verify_file(path / file.path, file)
                    except (storage.ChecksumError, OSError):
                        status = "MISMATCH"
                    break
            counts[status] += 1
            print(f"{info.name:<14} {file.path:<32} {_data_size(file.size):>8}  {status:<9} {where}".rstrip())
    print(f"{counts['verified']} verified, {counts['MISMATCH']} not matching their sha256 (see ssmcast data verify), "
          f"{counts['missing']} missing (ssmcast data fetch NAME, or --all)")  # fmt: skip
    return 0


def _data_verify(infos: list, directory: Path | None, required: bool) -> int:
    """Check every copy of every file in the search directories; missing files fail only when ``required``."""
    from ssmcast.datasets import storage

    dirs = [path for path, _ in _data_dirs(directory)]
    checked = bad = missing = 0
    for info in infos:
        for file in info.files:
            copies = [path / file.path for path in dirs if (path / file.path).is_file()]
            if not copies:
                missing += 1
                if required:
                    _data_error(f"{info.name}: {file.path} is in none of {', '.join(map(str, dirs))}")
            for path in copies:
                checked += 1
                try:
                    storage.verify_file(path, file)
                except storage.ChecksumError as err:
                    bad += 1
                    _data_error(_data_mismatch(info.name, err))
                    continue
                except OSError as err:
                    bad += 1
                    _data_error(f"{info.name}: {path} cannot be read ({type(err).__name__}: {err})")
                    continue
                print(f"{info.name}: {path}: verified")
    print(f"{checked} file(s) checked: {checked - bad} verified, {bad} not matching; {missing} missing")
    return 1 if bad or (missing and required) else 0


def _data_fetch(infos: list, directory: Path | None, source: Path | None, force: bool) -> int:
    """Put a verified copy of each file into ``directory`` (default ``storage.default_fetch_dir()``)."""
    from ssmcast.datasets import storage

    root = directory if directory is not None else storage.default_fetch_dir()
    failed = 0
    for info in infos:
        if info.source == "statsmodels":
            print(f"{info.name}: bundled with statsmodels, nothing to fetch")
        for file in info.files:
            target = root / file.path
            if target.is_file():
                try:
                    storage.verify_file(target, file)
                    print(f"{info.name}: {target} already present, sha256 verified")
                    continue
                except storage.ChecksumError as err:
                    if not force:
                        failed += 1
                        _data_error(_data_mismatch(info.name, err))
                        continue
            try:
                if source is not None:
                    storage.copy_file(file, source, root)
                else:
                    storage.download_file(file, root)
            except storage.ChecksumError as err:
                failed += 1
                what = f"copy from {source}" if source is not None else "download"
                _data_error(f"{info.name}: the {what} of {file.path} does not match the registry, nothing was "
                            "written: " + "; ".join(err.mismatches + err.failures))  # fmt: skip
                continue
            except storage.DatasetNotFoundError as err:
                failed += 1
                if source is not None:
                    _data_error(f"{info.name}: {file.path} is not in --from {source} ({'; '.join(err.failures)})")
                else:
                    tried = err.failures or file.urls or ("no mirror is listed",)
                    _data_error(f"{info.name}: cannot download {file.path}, no mirror could be reached; tried "
                                + "; ".join(tried))  # fmt: skip
                continue
            except OSError as err:  # the target folder is not writable, the disk is full, ...
                failed += 1
                _data_error(f"{info.name}: cannot write {target}: {type(err).__name__}: {err}")
                continue
            print(f"{info.name}: {file.path} -> {target} ({_data_size(file.size)}, sha256 verified)")
    if root.resolve() not in [path.resolve() for path in storage.search_dirs()]:
        print(f"note: {root} is not searched by default: set {storage.ENV_VAR}={root} or pass data_dir=")
    if failed:
        _data_error(f"data fetch: {failed} file(s) failed (see above)")
    return 1 if failed else 0


# a tracking server that went away should cost seconds, not MLflow's default minutes of retries
MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ssmcast`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    for key, value in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if args and args[0] in COMMANDS:
        command, rest = args[0], args[1:]
        if command == "ui":
            return ui(rest)
        if command == "sync":
            return sync(rest)
        if command == "data":
            return data(rest)
        return run_hydra(command, rest)
    if any(a.startswith("command=") for a in args):  # re-launched by Lightning DDP with sys.argv
        return run_hydra("train", args)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    print(f"ssmcast: error: unknown command {args[0]!r}; choose from {', '.join(COMMANDS)}\n", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
