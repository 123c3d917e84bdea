"""The command line's imports: the collector off while they run, on again after, their objects frozen."""

from __future__ import annotations

import gc
import sys

import pytest

from kdlang import cli, startup


@pytest.fixture
def fresh_gc():
    """Leave the collector as the test found it (frozen objects back into the oldest generation)."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_the_collector_comes_back_on_and_what_was_imported_is_frozen(fresh_gc):
    gc.unfreeze()
    startup.import_frozen("json", "kdlang.no_such_module", "email.mime.text")
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    assert "json" in sys.modules and "email.mime.text" not in sys.modules  # stopped at the missing one


def test_a_disabled_collector_stays_disabled(fresh_gc):
    gc.disable()
    startup.import_frozen("json")
    assert not gc.isenabled()


def test_the_cli_leaves_the_collector_on_for_the_command(fresh_gc, tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "r.kd"
    recipe.write_text("kdlang 1\n", encoding="utf-8")
    states = []
    real = cli._cmd_check

    def spy(args):
        states.append(gc.isenabled())
        return real(args)
    monkeypatch.setattr(cli, "_cmd_check", spy)
    cli.main(["check", str(recipe), "--no-shapes"])
    assert states == [True] and gc.get_freeze_count() > 0
