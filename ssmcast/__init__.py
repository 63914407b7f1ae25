"""ssmcast: time-series forecasting with structured state space models."""

__version__ = "0.1.0"
