import copy
import logging

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from ssmcast.data import SeriesScaler, TemporalSplit, WindowDataModule


def test_setup_splits_scales_and_windows(make_panel):
    frame = make_panel({"b": 50, "a": 40})
    original = copy.deepcopy(frame)
    dm = WindowDataModule(
        frame,
        input_size=6,
        horizon=3,
        split=TemporalSplit.by_rows(0.6, 0.2, None),
        scaler="standard",
        batch_size=5,
        eval_step=2,
    )
    dm.setup("fit")
    pd.testing.assert_frame_equal(frame, original)
    assert dm.freq == "h" and dm.n_channels == 1
    # a: 24/8/8 rows, b: 30/10/10 rows
    assert dm.ranges["val"].tolist() == [[24, 32], [30, 40]]
    assert len(dm.train_dataset) == (24 - 9 + 1) + (30 - 9 + 1)
    assert len(dm.val_dataset) == (8 - 3) // 2 + 1 + (10 - 3) // 2 + 1
    assert len(dm.test_dataset) == (8 - 3) // 2 + 1 + (10 - 3) // 2 + 1
    for part in ("train", "val", "test"):
        dataset = dm.datasets[part]
        windows = dataset.windows()
        for (block, start), uid in zip(zip(*dataset.locate(np.arange(len(dataset)))), windows["unique_id"]):
            lo, hi = dm.ranges[part][block]
            assert lo <= start + 6 and start + 9 <= hi  # targets inside their part
            assert uid == ["a", "b"][block]
        first_start = dataset.locate(0)[1]
        assert first_start == max(dm.ranges[part][0, 0] - 6, 0)  # contexts reach back input_size rows
    # the scaler saw the training rows only: z-scores of series a with train mean/std
    y_a = frame.loc[frame.unique_id == "a", "y"].to_numpy()
    mean, std = y_a[:24].mean(), y_a[:24].std()
    np.testing.assert_allclose(dm.panel.values[:40, 0].numpy(), (y_a - mean) / std, rtol=1e-5, atol=1e-5)
    batch = next(iter(dm.train_dataloader()))
    assert batch["context"].shape == (5, 6, 1) and batch["target"].shape == (5, 3, 1)
    assert isinstance(dm.scaler, SeriesScaler)
    back = dm.scaler.inverse_transform_array(batch["target"][..., 0], batch["series"])
    assert back.shape == (5, 3)


def test_scaler_ignores_val_and_test_values(make_panel):
    frame = make_panel({"a": 60})
    dm = WindowDataModule(frame, input_size=4, horizon=2, split=TemporalSplit.by_rows(30, 15, 15), scaler="robust")
    dm.setup()
    changed = frame.copy()
    changed.loc[30:, "y"] = changed.loc[30:, "y"] * 100 + 5
    dm2 = WindowDataModule(changed, input_size=4, horizon=2, split=TemporalSplit.by_rows(30, 15, 15), scaler="robust")
    dm2.setup()
    np.testing.assert_array_equal(dm.scaler.loc_, dm2.scaler.loc_)
    np.testing.assert_array_equal(dm.scaler.scale_, dm2.scaler.scale_)
    torch.testing.assert_close(dm.panel.values[:30], dm2.panel.values[:30], rtol=0, atol=0)


def test_mixed_mode_time_split_and_empty_parts(make_panel):
    frame = make_panel({"x": 48, "y2": 48, "z": 48})
    split = TemporalSplit.by_time(test_start=pd.Timestamp("2021-01-02 12:00"))
    dm = WindowDataModule(frame, input_size=8, horizon=4, split=split, channel_mode="mixed", batch_size=4)
    dm.setup()
    assert dm.n_channels == 3
    assert len(dm.test_dataset) == 12 - 4 + 1 and len(dm.val_dataset) == 0
    assert dm.val_dataloader() == []
    assert next(iter(dm.test_dataloader()))["context"].shape == (4, 8, 3)
    no_split = WindowDataModule(frame, input_size=8, horizon=4)
    no_split.setup()
    assert len(no_split.train_dataset) == 3 * (48 - 12 + 1) and no_split.test_dataloader() == []


def test_datamodule_errors(make_panel):
    frame = make_panel({"a": 10})
    with pytest.raises(ValueError, match="no training window fits.*longest 10 rows"):
        WindowDataModule(frame, input_size=8, horizon=4).setup()
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        WindowDataModule(frame, input_size=2, horizon=1, batch_size=0)
    with pytest.raises(TypeError, match="scaler must be None"):
        WindowDataModule(frame, input_size=2, horizon=1, scaler=3)
    with pytest.raises(TypeError, match="split must be a TemporalSplit"):
        WindowDataModule(frame, input_size=2, horizon=1, split=(0.7, 0.1, 0.2))
    with pytest.raises(RuntimeError, match="call setup"):
        WindowDataModule(frame, input_size=2, horizon=1).train_dataloader()


class LinearForecaster(L.LightningModule):
    def __init__(self, input_size, horizon):
        super().__init__()
        self.proj = torch.nn.Linear(input_size, horizon)

    def forward(self, context):  # (B, L, C) -> (B, H, C)
        return self.proj(context.transpose(1, 2)).transpose(1, 2)

    def _loss(self, batch):
        return torch.nn.functional.mse_loss(self(batch["context"]), batch["target"])

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch), batch_size=len(batch["context"]))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self._loss(batch), batch_size=len(batch["context"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.filterwarnings("ignore:.*does not have many workers")  # lightning's hint on many-core hosts
def test_lightning_trainer_runs_on_the_datamodule(make_panel):
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    frame = make_panel({"a": 80, "b": 80}, freq="D")
    dm = WindowDataModule(
        frame, input_size=8, horizon=4, split=TemporalSplit.by_rows(0.6, 0.2, 0.2), scaler="standard", batch_size=16
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = LinearForecaster(8, 4)
    trainer.fit(model, datamodule=dm)
    result = trainer.test(model, datamodule=dm, verbose=False)
    assert np.isfinite(result[0]["test_loss"])
    assert trainer.num_val_batches == [len(dm.val_dataloader())]
