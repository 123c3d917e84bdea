"""The share of an epoch spent waiting for data: recorded per epoch, and said when it is large."""

from __future__ import annotations

import json
import time
from pathlib import Path

from kdlang.cli import main
from kdlang.library.datasets import loading
from kdlang.runtime import trainer
from kdlang.runtime.data import Waited

TINY = Path(__file__).parent / "recipes" / "two_stage.kd"


def test_waited_adds_up_the_time_spent_getting_each_batch():
    def slow():
        for i in range(3):
            time.sleep(0.02)
            yield i

    batches = Waited(slow())
    assert list(batches) == [0, 1, 2]
    assert 0.06 <= batches.seconds < 1.0


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _slow_collate(monkeypatch) -> None:
    def slow_collate(items):
        time.sleep(0.05)
        return loading.collate.__wrapped__(items)

    slow_collate.__wrapped__ = loading.collate
    monkeypatch.setattr(loading, "collate", slow_collate)


def test_every_training_epoch_records_its_data_wait_share(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compile", str(TINY), "--run", "--out", str(out)]) == 0
    rows = [row for row in _rows(out) if row["epoch"] >= 0]
    assert rows and all(0.0 <= row["data_wait"] <= 1.0 for row in rows)
    assert "waited for data" not in capsys.readouterr().out  # synthetic batches come at once


def test_a_run_that_mostly_waits_for_data_is_told_about_workers(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trainer, "DATA_WAIT_SECONDS", 0.1)  # the tiny recipe's epochs wait ~0.3 s
    _slow_collate(monkeypatch)
    out = tmp_path / "run"
    assert main(["compile", str(TINY), "--run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "of the epoch waited for data; data(..., workers=N)" in printed
    assert max(row["data_wait"] for row in _rows(out) if row["epoch"] >= 0) > 0.2


def test_a_short_wait_is_not_worth_a_hint_whatever_its_share(tmp_path, capsys, monkeypatch):
    """A tiny epoch on a busy machine can spend a large share of its fraction of a second in the
    loader: no advice about workers until the wait itself is long."""
    monkeypatch.setattr(trainer, "DATA_WAIT_SECONDS", 10.0)
    _slow_collate(monkeypatch)
    out = tmp_path / "run"
    assert main(["compile", str(TINY), "--run", "--out", str(out)]) == 0
    assert max(row["data_wait"] for row in _rows(out) if row["epoch"] >= 0) > 0.2
    assert "waited for data" not in capsys.readouterr().out
