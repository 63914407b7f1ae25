"""A Lightning ``LightningDataModule`` over one validated long frame: split, scale, window, load.

``setup()`` validates the frame once, cuts it with a :class:`TemporalSplit`, fits the optional
:class:`SeriesScaler` on the training rows only, builds one :class:`SeriesPanel` (one float32 array for
the whole panel) and three :class:`WindowDataset` views on it whose targets stay inside their part; val
and test contexts may reach back ``input_size`` rows into the previous part (``reach_back=True``).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import pandas as pd
from torch.utils.data import DataLoader

from ssmcast.data.frames import infer_freq, validate
from ssmcast.data.scaling import SeriesScaler
from ssmcast.data.splits import PARTS, TemporalSplit, select_rows
from ssmcast.data.windows import BatchedWindows, SeriesPanel, WindowDataset, collate_windows

__all__ = ["WindowDataModule"]


class WindowDataModule(L.LightningDataModule):
    """Train/val/test window loaders for a panel of series (see the module docstring).

    ``split=None`` puts every row in train (no val/test loaders). ``scaler`` is ``None``, ``"standard"``,
    ``"robust"`` or an unfitted :class:`SeriesScaler`; it scales ``y`` per series. ``step`` is the
    train stride, ``eval_step`` the val/test stride. Empty val/test parts give ``[]`` loaders (skipped by
    Lightning). Loaders fetch each batch with one vectorised gather (:class:`BatchedWindows`). The caller's frame
    is never modified.
    """

    def __init__(
        self,
        df,
        *,
        input_size: int,
        horizon: int,
        split: TemporalSplit | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        step: int = 1,
        eval_step: int = 1,
        min_start: int = 0,
        channel_mode: str = "independent",
        scaler: str | SeriesScaler | None = None,
        past_covariates: Sequence[str] = (),
        future_covariates: Sequence[str] = (),
        static: pd.DataFrame | None = None,
        freq=None,
        fill: str | None = None,
        reach_back: bool = True,
        shuffle: bool = True,
        drop_last: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size or 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if split is not None and not isinstance(split, TemporalSplit):
            raise TypeError(f"split must be a TemporalSplit or None; got {type(split).__name__}")
        if isinstance(scaler, str):
            scaler = SeriesScaler(scaler)
        elif scaler is not None and not isinstance(scaler, SeriesScaler):
            raise TypeError(f"scaler must be None, 'standard', 'robust' or a SeriesScaler; got {scaler!r}")
        self.df = df
        self.input_size, self.horizon = input_size, horizon
        self.split = split if split is not None else TemporalSplit.by_rows()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.step, self.eval_step, self.min_start = step, eval_step, min_start
        self.channel_mode, self.scaler = channel_mode, scaler
        self.past_covariates, self.future_covariates = list(past_covariates), list(future_covariates)
        self.static, self.freq, self.fill, self.reach_back = static, freq, fill, reach_back
        self.shuffle, self.drop_last = shuffle, drop_last
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.frame: pd.DataFrame | None = None
        self.panel: SeriesPanel | None = None
        self.ranges: dict | None = None
        self.datasets: dict[str, WindowDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.panel is not None:
            return
        covariates = self.past_covariates + self.future_covariates
        frame = validate(self.df, freq=self.freq, fill=self.fill, covariates=covariates)
        self.freq = self.freq if self.freq is not None else frame.attrs.get("freq") or infer_freq(frame)
        ranges = self.split.ranges(frame)
        if self.scaler is not None:
            self.scaler.fit(select_rows(frame, ranges["train"]))
            frame = self.scaler.transform(frame)
        self.frame = frame
        self.panel = SeriesPanel.from_frame(
            frame, channel_mode=self.channel_mode, past_covariates=self.past_covariates,
            future_covariates=self.future_covariates, static=self.static, validated=True,
        )
        if self.channel_mode == "mixed":  # one block: every series shares the grid, so the ranges agree
            ranges = {part: r[:1] for part, r in ranges.items()}
        self.ranges = ranges
        for part in PARTS:
            self.datasets[part] = WindowDataset(
                self.panel, self.input_size, self.horizon,
                step=self.step if part == "train" else self.eval_step, min_start=self.min_start,
                target_range=ranges[part], reach_back=self.reach_back,
            )
        if len(self.datasets["train"]) == 0:
            longest = int((ranges["train"][:, 1] - ranges["train"][:, 0]).max())
            raise ValueError(
                f"no training window fits: input_size={self.input_size} + horizon={self.horizon} "
                f"exceeds every series' training part (longest {longest} rows)"
            )

    @property
    def n_channels(self) -> int:
        self._check_setup()
        return self.panel.n_channels

    def _check_setup(self) -> None:
        if self.panel is None:
            raise RuntimeError("call setup() first (the Trainer does it)")

    @property
    def train_dataset(self) -> WindowDataset:
        self._check_setup()
        return self.datasets["train"]

    @property
    def val_dataset(self) -> WindowDataset:
        self._check_setup()
        return self.datasets["val"]

    @property
    def test_dataset(self) -> WindowDataset:
        self._check_setup()
        return self.datasets["test"]

    def _loader(self, part: str, batch_size: int, shuffle: bool, drop_last: bool):
        self._check_setup()
        dataset = self.datasets[part]
        if len(dataset) == 0:
            return []
        return DataLoader(
            BatchedWindows(dataset), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
            collate_fn=collate_windows,
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader("train", self.batch_size, self.shuffle, self.drop_last)

    def val_dataloader(self):
        return self._loader("val", self.eval_batch_size, False, False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size, False, False)

    def predict_dataloader(self):
        return self.test_dataloader()
