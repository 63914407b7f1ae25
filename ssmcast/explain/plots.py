"""Figures of the explanations, and :func:`save_figures` (what ``ssmcast train ... explain=true`` logs).

Figures are ``matplotlib.figure.Figure`` objects on the Agg canvas, never pyplot's global state (as
:mod:`ssmcast.evaluation.compare`): nothing is shown or leaked, and a notebook displays one by evaluating it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ssmcast.explain._common import is_forecaster, layers, positive_int

__all__ = ["plot_kernels", "plot_spectrum", "plot_step_sizes", "plot_attribution", "save_figures"]


def _figure(n_rows: int, width: float = 9.0, row_height: float = 2.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, max(row_height * n_rows, 2.5)), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_columns(frame, columns: list[str], what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame) or any(c not in frame.columns for c in columns):
        have = list(frame.columns) if isinstance(frame, pd.DataFrame) else type(frame).__name__
        raise ValueError(f"{what} takes the frame ssmcast.explain.{what.split('_', 1)[1]}() returns (columns "
                         f"{columns}); got {have}")  # fmt: skip
    if frame.empty:
        raise ValueError(f"{what}: the frame is empty, nothing to plot")
    return frame


def _diagonal(frame: pd.DataFrame, max_features: int) -> pd.DataFrame:
    """The kernels of channel 0 from each feature to itself (all of S4's; S5's diagonal), ``max_features`` a layer."""
    rows = frame[(frame["channel"] == 0) & (frame["feature"] == frame["input_feature"])]
    return rows[rows["feature"] < positive_int(max_features, "max_features")]


def _layer_panels(frame: pd.DataFrame, x: str, y: str, title: str, xlabel: str, decorate):
    """One panel per (layer, kind) of ``frame``, stacked: ``y`` against ``x``, one line per feature, ``decorate(ax)``
    (a zero line, a log scale), the title ``layer {layer} ({kind}): {title}`` and ``xlabel``; the legend on the
    first panel. What :func:`plot_kernels` and :func:`plot_spectrum` draw."""
    groups = list(frame.groupby(["layer", "kind"], sort=True))
    fig = _figure(len(groups))
    for ax, ((layer, kind), rows) in zip(fig.subplots(len(groups), 1, squeeze=False)[:, 0], groups):
        for feature, k in rows.groupby("feature"):
            ax.plot(k[x], k[y], lw=1, label=f"feature {feature}")
        decorate(ax)
        ax.set_title(f"layer {layer} ({kind}): {title}", fontsize=10)
        ax.set_xlabel(xlabel)
    fig.axes[0].legend(fontsize=7, ncol=4, loc="upper right")
    return fig


def plot_kernels(kernels: pd.DataFrame, max_features: int = 8):
    """One panel per layer: the kernel ``K_j`` against the lag ``j`` of its first ``max_features`` features (S4's
    first channel; S5's kernels from each feature to itself). ``kernels``: the frame :func:`kernels` returns."""
    from ssmcast.explain.convolution import COLUMNS

    frame = _diagonal(_check_columns(kernels, COLUMNS, "plot_kernels"), max_features)
    return _layer_panels(frame, "lag", "value", "kernel K_j", "lag j (steps)",
                         lambda ax: ax.axhline(0, color="grey", lw=0.5))  # fmt: skip


def plot_spectrum(spectrum: pd.DataFrame, max_features: int = 8):
    """One panel per layer: ``|K(f)|`` against the frequency ``f`` (cycles per step, log scale) of the features
    :func:`plot_kernels` shows. ``spectrum``: the frame :func:`spectrum` returns."""
    columns = ["layer", "kind", "channel", "feature", "input_feature", "frequency", "period", "magnitude"]
    frame = _diagonal(_check_columns(spectrum, columns, "plot_spectrum"), max_features)
    return _layer_panels(frame, "frequency", "magnitude", "|K(f)|", "frequency f (cycles per step; period 1/f steps)",
                         lambda ax: ax.set_yscale("log"))  # fmt: skip


def _one_series(frame: pd.DataFrame, unique_id, what: str) -> tuple[object, pd.DataFrame]:
    available = list(pd.unique(frame["unique_id"]))
    uid = available[0] if unique_id is None else unique_id
    if uid not in available:
        raise ValueError(f"{what}: unique_id {uid!r} is not in the frame; it has {available[:10]}")
    return uid, frame[frame["unique_id"] == uid]


def plot_step_sizes(step_sizes: pd.DataFrame, unique_id=None):
    """For one series (default the first): the mean ``Delta`` over the channels of each layer along the window,
    then one heat map per layer (channel or head by time step). ``step_sizes``: :func:`step_sizes`' frame."""
    from ssmcast.explain.selection import COLUMNS

    uid, rows = _one_series(_check_columns(step_sizes, COLUMNS, "plot_step_sizes"), unique_id, "plot_step_sizes")
    groups = list(rows.groupby(["layer", "kind"], sort=True))
    fig = _figure(1 + len(groups))
    axes = fig.subplots(1 + len(groups), 1, squeeze=False, sharex=True)[:, 0]
    for (layer, kind), g in groups:
        mean = g.groupby("ds", sort=True)["delta"].mean()
        axes[0].plot(mean.index, mean.to_numpy(), lw=1.2, label=f"layer {layer} ({kind})")
    axes[0].set_title(f"{uid}: mean step size Delta over the channels", fontsize=10)
    axes[0].legend(fontsize=7)
    for ax, ((layer, kind), g) in zip(axes[1:], groups):
        grid = g.pivot(index="channel", columns="ds", values="delta")
        mesh = ax.pcolormesh(grid.columns.to_numpy(), grid.index.to_numpy(), grid.to_numpy(), shading="nearest",
                             cmap="viridis")  # fmt: skip
        fig.colorbar(mesh, ax=ax, label="Delta")
        ax.set_ylabel("head" if kind == "Mamba2" else "channel")
        ax.set_title(f"layer {layer} ({kind}): Delta per {'head' if kind == 'Mamba2' else 'channel'}", fontsize=10)
    if isinstance(rows["ds"].iloc[0], pd.Timestamp):
        fig.autofmt_xdate()
    return fig


def plot_attribution(attribution: pd.DataFrame, unique_id=None, step: int | None = None):
    """For one series (default the first): its input window and forecast, the attribution of the forecast to each
    input split into the linear skip and the network (at forecast ``step``, default the mean over the horizon),
    and a heat map of the attribution by forecast step and input. ``attribution``: :func:`attribution`'s frame.
    Only the series' own inputs are drawn (``channel_mode="mixed"``: the other series' are in the frame)."""
    from ssmcast.explain.attributions import COLUMNS

    uid, rows = _one_series(_check_columns(attribution, COLUMNS, "plot_attribution"), unique_id, "plot_attribution")
    rows = rows[rows["input_id"] == uid]
    steps = sorted(rows["step"].unique())
    if step is not None and step not in steps:
        raise ValueError(f"plot_attribution: step {step!r} is not in the frame; steps run 1..{steps[-1]}")
    fig = _figure(3, row_height=2.6)
    top, bars, heat = fig.subplots(3, 1, squeeze=False, sharex=False)[:, 0]
    window = rows.drop_duplicates("ds").sort_values("ds")
    future = rows.drop_duplicates("step").sort_values("step")
    top.plot(window["ds"], window["y"], color="black", lw=1.2, label="input window")
    top.plot(future["target_ds"], future["forecast"], color="C1", lw=1.2, label="forecast")
    top.plot(future["target_ds"], future["baseline_forecast"], color="C1", ls="--", lw=1, label="baseline forecast")
    top.set_title(f"{uid}", fontsize=10)
    top.legend(fontsize=7, loc="upper left")
    chosen = rows if step is None else rows[rows["step"] == step]
    parts = chosen.groupby("ds", sort=True)[["linear_skip", "network"]].mean()
    width = _bar_width(parts.index)
    bars.bar(parts.index, parts["linear_skip"], width=width, color="C0", label="linear skip")
    bars.bar(parts.index, parts["network"], width=width, bottom=parts["linear_skip"], color="C2", label="network")
    bars.axhline(0, color="grey", lw=0.5)
    what = "mean over the horizon" if step is None else f"step {step}"
    bars.set_title(f"attribution to each input ({what}), in the data's units", fontsize=10)
    bars.legend(fontsize=7, loc="upper left")
    grid = rows.pivot(index="step", columns="ds", values="attribution")
    bound = float(np.nanmax(np.abs(grid.to_numpy()))) or 1.0
    mesh = heat.pcolormesh(grid.columns.to_numpy(), grid.index.to_numpy(), grid.to_numpy(), shading="nearest",
                           cmap="RdBu_r", vmin=-bound, vmax=bound)  # fmt: skip
    fig.colorbar(mesh, ax=heat, label="attribution")
    heat.set_ylabel("forecast step")
    heat.set_title("attribution by forecast step (rows) and input (columns)", fontsize=10)
    if isinstance(window["ds"].iloc[0], pd.Timestamp):
        fig.autofmt_xdate()
    return fig


def _bar_width(index: pd.Index):
    """Bars as wide as 80% of one step of the input stamps."""
    values = index.to_numpy()
    if len(values) < 2:
        return 0.8
    return 0.8 * (values[1] - values[0])


def save_figures(forecaster, directory, df=None, unique_id=None, method: str = "integrated_gradients",
                 steps: int = 16, dpi: int = 100) -> list[Path]:
    """Write the explanation figures of a fitted forecaster into ``directory``; returns their paths.

    ``kernels.png`` and ``spectrum.png`` for an LTI backbone (S4, S4D, S5, Liquid-S4), ``step_sizes.png`` for a
    selective one (Mamba, Mamba-2, Jamba), and ``attribution.png`` for every forecaster: the forecast from the last
    window of ``df`` (default the training data) of series ``unique_id`` (default the first), by ``method`` with
    ``steps`` path points (:func:`attribution`)."""
    from ssmcast.explain.attributions import attribution
    from ssmcast.explain.convolution import LTI_LAYERS, kernels, spectrum
    from ssmcast.explain.selection import SELECTIVE_LAYERS, step_sizes

    if not is_forecaster(forecaster):
        raise TypeError(f"save_figures() needs a fitted ssmcast neural forecaster; got {type(forecaster).__name__}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    mixers, _ = layers(forecaster, "save_figures()")
    if unique_id is None:
        unique_id = forecaster.ids_[0] if df is None else _first_id(forecaster, df)
    figures = {}
    if any(isinstance(m, LTI_LAYERS) for _, m in mixers):
        frame = kernels(forecaster)
        figures["kernels.png"] = plot_kernels(frame)
        n_fft = max(256, forecaster.input_size)  # a smooth curve: the same spectrum on a finer frequency grid
        figures["spectrum.png"] = plot_spectrum(spectrum(frame, freq=getattr(forecaster, "freq_", None), n_fft=n_fft))
    if any(isinstance(m, SELECTIVE_LAYERS) for _, m in mixers):
        frame = step_sizes(forecaster, df, unique_ids=[unique_id])
        figures["step_sizes.png"] = plot_step_sizes(frame)
    frame = attribution(forecaster, df, method=method, steps=steps, unique_ids=[unique_id])
    figures["attribution.png"] = plot_attribution(frame, unique_id=unique_id)
    paths = []
    for name, fig in figures.items():
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=dpi)
    return paths


def _first_id(forecaster, df):
    from ssmcast.data.frames import ID, to_long

    present = set(to_long(df)[ID])
    return next((uid for uid in forecaster.ids_ if uid in present), forecaster.ids_[0])
