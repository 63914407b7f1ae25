"""Training by Lightning: the module and network (`module.py`), losses, the epoch sampler, the trainer set-up and
the loggers a fit reports to (`loggers.py`)."""
