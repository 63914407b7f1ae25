"""The long-horizon forecasting protocol of Informer/Autoformer/Time-Series-Library (TSLib).

TSLib (`data_provider/data_loader.py`) cuts each split with two borders per part,
`data_x = rows[border1:border2]`, where the validation and test `border1` start `input_size` (seq_len)
rows before the part so the first window's look-back reaches into the previous part. A part then
holds `len(data_x) - input_size - horizon + 1` windows (its `__len__`): window `i` reads input rows
`border1 + i + [0, input_size)` and predicts rows `border1 + i + input_size + [0, horizon)`.
For the test part this is `n_test - horizon + 1` whatever `input_size` is (ETTh1, H=96: 2785).

ETTh*/ETTm* use fixed month borders (12/4/4 months of 30 days); every other dataset the
`Dataset_Custom` rule n_train = int(0.7 n), n_test = int(0.2 n), n_val = n - n_train - n_test.
Every window is counted: TSLib's test loader does not drop the last incomplete batch (older
Informer/Autoformer code did, silently losing test windows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .registry import Split, custom_split, dataset_info

__all__ = [
    "LTSF_DATASETS",
    "PARTS",
    "Borders",
    "custom_split",
    "ltsf_borders",
    "ltsf_split",
    "n_test_windows",
    "n_windows",
    "window_starts",
]

LTSF_DATASETS = ("etth1", "etth2", "ettm1", "ettm2", "weather", "exchange_rate", "illness")
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Borders:
    """TSLib's `border1s`/`border2s`: part `k` (train, val, test) reads rows `[border1s[k], border2s[k])`."""

    border1s: tuple[int, int, int]
    border2s: tuple[int, int, int]

    def rows(self, part: str) -> tuple[int, int]:
        """`(border1, border2)` of `part` ("train", "val" or "test")."""
        k = _part_index(part)
        return self.border1s[k], self.border2s[k]


def ltsf_split(name: str | Split) -> Split:
    """Row ranges of the standard train/val/test split of long-horizon dataset `name`.

    ETTh: (0, 8640) / (8640, 11520) / (11520, 14400); ETTm the same times 4 (later rows are unused);
    Weather, Exchange and ILI follow `custom_split(n_rows)`. A `Split` is returned unchanged.
    """
    if isinstance(name, Split):
        return name
    info = dataset_info(name)
    if info.name not in LTSF_DATASETS or info.split is None:
        raise ValueError(
            f"{info.name!r} has no long-horizon split; long-horizon datasets: {', '.join(LTSF_DATASETS)} "
            "(use custom_split(n_rows) for your own data)"
        )
    return info.split


def ltsf_borders(name: str | Split, input_size: int) -> Borders:
    """TSLib's border1s/border2s for look-back `input_size`: val and test start `input_size` rows early."""
    split = ltsf_split(name)
    _check_positive_int(input_size, "input_size")
    if input_size > split.val[0]:
        raise ValueError(
            f"input_size={input_size} is longer than the {split.n_train} train rows, so the validation "
            "look-back would start before row 0"
        )
    return Borders(
        border1s=(split.train[0], split.val[0] - input_size, split.test[0] - input_size),
        border2s=(split.train[1], split.val[1], split.test[1]),
    )


def n_windows(name: str | Split, part: str, input_size: int, horizon: int) -> int:
    """Number of (input, target) windows TSLib draws from `part`: len(data_x) - input_size - horizon + 1."""
    border1, border2 = ltsf_borders(name, input_size).rows(part)
    _check_positive_int(horizon, "horizon")
    count = (border2 - border1) - input_size - horizon + 1
    if count < 1:
        raise ValueError(
            f"part {part!r} of {_label(name)} has {border2 - border1 - input_size} target rows, fewer than "
            f"horizon={horizon} (with input_size={input_size}): no window fits"
        )
    return count


def n_test_windows(name: str | Split, horizon: int) -> int:
    """Test windows for `horizon`: n_test_rows - horizon + 1 (ETTh 2881-H, ETTm 11521-H, Weather
    10540-H, Exchange 1518-H, ILI 194-H); independent of the look-back length."""
    split = ltsf_split(name)
    _check_positive_int(horizon, "horizon")
    count = split.n_test - horizon + 1
    if count < 1:
        raise ValueError(f"horizon={horizon} exceeds the {split.n_test} test rows of {_label(name)}")
    return count


def window_starts(name: str | Split, part: str, input_size: int, horizon: int) -> np.ndarray:
    """Absolute row of the first input step of every window of `part`, in TSLib order (int64).

    Window `k` uses input rows `[s, s + input_size)` and target rows `[s + input_size, s + input_size
    + horizon)` with `s = window_starts(...)[k]`.
    """
    count = n_windows(name, part, input_size, horizon)
    border1, _ = ltsf_borders(name, input_size).rows(part)
    return border1 + np.arange(count, dtype=np.int64)


def _part_index(part: str) -> int:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    return PARTS.index(part)


def _check_positive_int(value, label: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{label} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{label} must be >= 1, got {value}")


def _label(name: str | Split) -> str:
    return repr(name) if isinstance(name, str) else "the split"
