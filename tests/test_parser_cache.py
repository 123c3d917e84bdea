"""The compiled grammar is kept in the user's cache folder and reloaded: same parses, and a damaged
cache file or an unusable folder never stops a parse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdlang.syntax import grammar
from kdlang.syntax.parser import parse

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = (ROOT / "recipes" / "quickstart.kd").read_text()


@pytest.fixture
def fresh_parser(tmp_path, monkeypatch):
    """`lark_parser()` built anew with the cache in `tmp_path`; the suite's own parser put back after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("KDLANG_NO_CACHE", raising=False)
    grammar.lark_parser.cache_clear()
    yield tmp_path / "kdlang"
    grammar.lark_parser.cache_clear()


def test_a_parser_loaded_from_the_cache_parses_as_the_compiled_one(fresh_parser):
    compiled = parse(QUICKSTART, "q.kd")
    cache = Path(grammar.parser_cache())
    assert cache.parent == fresh_parser and cache.stat().st_size > 10_000
    assert (fresh_parser.stat().st_mode & 0o777) == 0o700
    grammar.lark_parser.cache_clear()
    written = cache.stat().st_mtime_ns
    assert parse(QUICKSTART, "q.kd") == compiled
    assert cache.stat().st_mtime_ns == written  # read, not compiled and written again


def test_a_damaged_cache_is_compiled_again(fresh_parser):
    parse(QUICKSTART, "q.kd")
    cache = Path(grammar.parser_cache())
    cache.write_bytes(cache.read_bytes()[:5000])  # as if another process were still writing it
    grammar.lark_parser.cache_clear()
    assert parse(QUICKSTART, "q.kd").statements
    assert cache.stat().st_size > 10_000  # written again, whole


def test_a_folder_it_cannot_write_or_a_switch_means_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a folder")
    assert grammar.parser_cache() is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert grammar.parser_cache() is not None
    monkeypatch.setenv("KDLANG_NO_CACHE", "1")
    assert grammar.parser_cache() is None
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        monkeypatch.delenv("KDLANG_NO_CACHE")
        monkeypatch.setenv("XDG_CACHE_HOME", str(locked))
        assert grammar.parser_cache() is None
