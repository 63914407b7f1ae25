"""Lightning's log lines under Hydra: each printed once (issue #32), shown with ``verbose=true``, hidden without."""

from __future__ import annotations

import logging
import re
from collections import Counter

from cli_helpers import TINY_RUN, csv_data, run_cli, run_dir, tiny_csv, tiny_model

# a log record as Hydra's job_logging prints it, or as Lightning's own console handler does ("INFO: ...")
HYDRA_LINE = re.compile(r"^\[[^\]]*\]\[(lightning[\w.]*)\]\[(\w+)\] - (.*)$")
LIGHTNING_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL): (.*)$")


def lightning_messages(text: str) -> list[str]:
    """The messages of the log lines in ``text`` that Lightning's loggers wrote, whichever handler printed them."""
    messages = []
    for line in text.splitlines():
        line = line.strip()
        if match := HYDRA_LINE.match(line):
            messages.append(match.group(3))
        elif match := LIGHTNING_LINE.match(line):
            messages.append(match.group(2))
    return messages


def test_verbose_train_prints_each_lightning_line_once(tmp_path):
    csv = tiny_csv(tmp_path)
    run = tmp_path / "run"
    args = ["model=mamba", *csv_data(csv), *[a for a in TINY_RUN if not a.startswith("verbose=")], "verbose=true",
            *tiny_model("MambaConfig"), "baselines=[]", "tracking=none"]
    out = run_cli(["train", *run_dir(args, run)], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]

    messages = lightning_messages(out.stdout + "\n" + out.stderr)
    assert any("GPU available" in m for m in messages), out.stdout[-2000:]  # verbose: Lightning's summary shows
    assert sum("GPU available" in m for m in messages) == 1, messages
    assert sum("Trainer.fit" in m for m in messages) == 1, messages
    assert "litlogger" not in out.stdout + out.stderr  # Lightning's advert for its cloud logger (issue #33)
    twice = {m: n for m, n in Counter(messages).items() if n > 1}
    assert not twice, f"printed more than once: {twice}"

    logs = list(run.glob("*.log"))  # the job's log file (Hydra's file handler on the root logger) has them too
    assert len(logs) == 1
    logged = lightning_messages(logs[0].read_text())
    assert sum("GPU available" in m for m in logged) == 1, logged


def test_quiet_lightning_sets_lightning_console_aside_only_while_root_logs():
    import lightning

    from ssmcast.training.trainer import quiet_lightning

    root, lightning_logger = logging.getLogger(), logging.getLogger("lightning")
    console = lightning._console
    saved = root.handlers[:], root.level, lightning_logger.handlers[:]
    try:
        root.handlers[:] = []
        if console not in lightning_logger.handlers:
            lightning_logger.addHandler(console)
        with quiet_lightning(True):  # nothing on the root: Lightning's own handler is the one that prints
            assert console in lightning_logger.handlers

        seen: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: seen.append(record.getMessage())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        for verbose in (True, False):
            with quiet_lightning(verbose):
                assert console not in lightning_logger.handlers
                # a child of "lightning" that surely propagates (lightning.pytorch may not, if imported before
                # the root had handlers)
                logging.getLogger("lightning.ssmcast_test").info("hello %s", verbose)
            assert console in lightning_logger.handlers  # restored afterwards
        assert seen == ["hello True"]  # once through the root; not at all when not verbose
    finally:
        root.handlers[:], lightning_logger.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1])
