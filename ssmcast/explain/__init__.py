"""What a model learned: the kernels of the LTI state space layers, the step sizes of the selective ones, and the
attribution of a forecast to its inputs (issue #34).

Of the three views of a state space model (continuous, recurrent, convolutional), the convolutional one says what
a linear time-invariant layer does with the past: it convolves its input with a kernel ``K_j = C Abar^j Bbar``.
A selective layer (Mamba) has no fixed kernel: its step ``Delta_t`` depends on the input, and ``Delta`` over the
window says what it chose to remember (large) or to ignore (small). Whatever the backbone, an attribution says
how much each past value moved the forecast.

* :func:`kernels`: each layer's kernel ``K_j`` (its impulse response) per lag, for S4, S4D, S5 and Liquid-S4 (its
  LTI part); :func:`spectrum`: ``|FFT(K)|`` per frequency (cycles per step, periods);
* :func:`step_sizes`: ``Delta`` per layer, channel (Mamba-2: head) and input time step, for Mamba, Mamba-2 and
  Jamba's Mamba layers;
* :func:`attribution`: integrated gradients or gradient x input of the forecast, per input, split into the exact
  linear-skip part and the network's, for every neural forecaster.

Each returns a long ``pandas.DataFrame``; ``plot_kernels``, ``plot_spectrum``, ``plot_step_sizes`` and
``plot_attribution`` draw those frames (``matplotlib`` Figures), :func:`save_figures` writes the ones that apply to a
forecaster (what ``ssmcast train ... explain=true`` logs to MLflow)::

    from ssmcast import explain

    est = ssmcast.S4DForecaster(input_size=96, horizon=24).fit(df)
    explain.plot_kernels(explain.kernels(est))
    attr = explain.attribution(est, df)            # one row per (series, forecast step, input)
    attr.groupby(["unique_id", "step"])["attribution"].sum()   # = forecast - baseline_forecast
    explain.plot_attribution(attr)

The explanations read the model and never change it. Layout: ``convolution.py`` (kernels, spectrum), ``selection.py``
(step sizes), ``attributions.py`` (attribution), ``plots.py`` (figures, ``save_figures``).
"""

from ssmcast.explain.attributions import METHODS, attribution
from ssmcast.explain.convolution import kernels, spectrum
from ssmcast.explain.plots import plot_attribution, plot_kernels, plot_spectrum, plot_step_sizes, save_figures
from ssmcast.explain.selection import step_sizes

__all__ = [
    "kernels",
    "spectrum",
    "step_sizes",
    "attribution",
    "METHODS",
    "plot_kernels",
    "plot_spectrum",
    "plot_step_sizes",
    "plot_attribution",
    "save_figures",
]
