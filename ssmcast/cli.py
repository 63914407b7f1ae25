"""The ``ssmcast`` command line. Heavy libraries (torch, lightning, mlflow) are imported inside the
commands that need them, so ``ssmcast --help`` answers at once."""

from __future__ import annotations

import argparse
import sys


def _train(args: argparse.Namespace) -> int:
    from ssmcast.jobs import main_job

    main_job(horizon=args.horizon, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssmcast", description="Forecasting with structured state space models and Kalman-filter baselines."
    )
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="run the main job (default dataset: statsmodels' weekly Mauna Loa co2)")
    train.add_argument("--horizon", type=int, default=52, help="forecast horizon in steps (default 52)")
    train.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    train.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
