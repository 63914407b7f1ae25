"""Training objectives of the neural forecasters and how each turns network outputs into forecasts.

The network emits ``n_params`` numbers per (horizon step, channel); a loss knows what they mean:

* ``mse`` / ``mae`` / ``huber``: one point forecast;
* ``quantile``: one output per quantile level, trained with the pinball loss (the point forecast is the
  median, so 0.5 is always among the levels);
* ``gaussian``: mean and scale (softplus), trained by negative log-likelihood;
* ``student_t``: mean, scale and degrees of freedom (2 + softplus), negative log-likelihood.

Distributional losses give any quantile at predict time; a quantile loss gives only its levels.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

LOSSES = ("mse", "mae", "huber", "quantile", "gaussian", "student_t")


class ForecastLoss:
    def __init__(self, kind: str, quantiles: list[float] | None = None, huber_delta: float = 1.0):
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}: expected one of {', '.join(LOSSES)}")
        self.kind = kind
        self.huber_delta = huber_delta
        self.levels = sorted(set(quantiles or []) | {0.5}) if kind == "quantile" else []
        self.n_params = {"quantile": len(self.levels), "gaussian": 2, "student_t": 3}.get(kind, 1)

    @property
    def n_location(self) -> int:
        """How many leading outputs are locations (shifted together by a linear skip): every quantile, or
        the point forecast / the mean."""
        return self.n_params if self.kind == "quantile" else 1

    @property
    def probabilistic(self) -> bool:
        return self.kind in ("quantile", "gaussian", "student_t")

    def __call__(self, out: torch.Tensor, y: torch.Tensor, stats=None) -> torch.Tensor:
        """out ``(B, h, C, n_params)``, y ``(B, h, C)`` -> scalar loss.

        ``stats``: the ``(mean, std)`` ``(B, 1, C)`` of reversible instance normalisation when ``out`` is in
        the window-normalised space. The loss is then taken after mapping ``out`` back to ``y``'s space
        (locations ``* std + mean``, scales ``* std``), as RevIN and Time-Series-Library do: each window
        counts by its error in the data's units, and a nearly flat context (tiny ``std``) cannot blow up."""
        out = out.float()
        y = y.float()
        shift, gain = (0.0, 1.0) if stats is None else (stats[0].float(), stats[1].float())  # (B, 1, C)
        if self.kind in ("mse", "mae", "huber"):
            pred = out[..., 0] * gain + shift  # (B, h, C)
            if self.kind == "mse":
                return F.mse_loss(pred, y)
            if self.kind == "mae":
                return F.l1_loss(pred, y)
            return F.huber_loss(pred, y, delta=self.huber_delta)
        if self.kind == "quantile":
            pred = out * _last(gain) + _last(shift)  # (B, h, C, Q)
            q = torch.tensor(self.levels, device=out.device, dtype=out.dtype)  # (Q,)
            err = y.unsqueeze(-1) - pred  # (B, h, C, Q)
            return torch.maximum(q * err, (q - 1) * err).mean()
        mu = out[..., 0] * gain + shift  # (B, h, C)
        scale = (F.softplus(out[..., 1]) + 1e-4) * gain  # (B, h, C)
        if self.kind == "gaussian":
            return (torch.log(scale) + 0.5 * ((y - mu) / scale) ** 2 + 0.5 * math.log(2 * math.pi)).mean()
        nu = 2.0 + F.softplus(out[..., 2])
        return -torch.distributions.StudentT(nu, mu, scale).log_prob(y).mean()

    def point(self, out: torch.Tensor) -> torch.Tensor:
        """The point forecast ``(B, h, C)``: the prediction, the median, or the mean."""
        if self.kind == "quantile":
            return out[..., self.levels.index(0.5)]
        return out[..., 0]

    def quantiles(self, out: torch.Tensor, levels: list[float]) -> torch.Tensor:
        """Forecast quantiles ``(B, h, C, len(levels))``."""
        if not levels:
            return out.new_zeros(out.shape[:-1] + (0,))
        if self.kind == "quantile":
            missing = [q for q in levels if q not in self.levels]
            if missing:
                raise ValueError(
                    f"quantiles {missing} were not trained: this model was fitted with quantiles "
                    f"{self.levels}; refit with quantiles=[...] including them, or use loss='gaussian'"
                )
            idx = [self.levels.index(q) for q in levels]
            return torch.sort(out[..., idx], dim=-1).values
        if self.kind in ("mse", "mae", "huber"):
            raise ValueError(
                f"loss={self.kind!r} gives point forecasts only; fit with quantiles=[...] (pinball loss) "
                "or loss='gaussian'/'student_t' to get quantiles"
            )
        out = out.float()
        mu, scale = out[..., 0:1], F.softplus(out[..., 1:2]) + 1e-4
        q = torch.tensor(levels, device=out.device, dtype=out.dtype)
        if self.kind == "gaussian":
            z = torch.special.ndtri(q)
        else:
            nu = (2.0 + F.softplus(out[..., 2:3])).double()
            z = _student_t_ppf(q.double(), nu).to(out.dtype)
        return mu + scale * z


def _last(value):
    """A ``(B, 1, C)`` statistic broadcast over a trailing parameter axis (scalars unchanged)."""
    return value.unsqueeze(-1) if torch.is_tensor(value) else value


def _student_t_ppf(q: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """Quantiles of the standard Student-t (scipy on CPU; the shapes broadcast)."""
    from scipy.stats import t as student_t

    values = student_t.ppf(q.cpu().numpy(), nu.detach().cpu().numpy())
    return torch.as_tensor(values, device=nu.device)
