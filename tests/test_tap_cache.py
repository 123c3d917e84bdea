"""Tap listings traced once per architecture and kept: in the process, and on disk for the next one."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from kdlang.library import models
from kdlang.library.models import list_taps, tap_cache

CIFAR = (3, 32, 32)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache: nothing in memory, the disk's in `tmp_path`; every trace counted."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("KDLANG_NO_CACHE", raising=False)
    monkeypatch.setattr(tap_cache, "_MEMORY", {})
    traced = []

    def counting(model, input_shape):
        traced.append(type(model).__name__)
        return list_taps(model, input_shape)

    monkeypatch.setattr(tap_cache, "list_taps", counting)
    return traced, tmp_path / "kdlang"


def _resnet20(classes=100, seed=0):
    torch.manual_seed(seed)
    return models.build("resnet20", num_classes=classes), models.architecture("resnet20", classes, 3, {})


def test_one_trace_per_architecture_in_a_process(cache):
    traced, _ = cache
    (a, arch), (b, same) = _resnet20(seed=0), _resnet20(seed=1)  # other weights, same network
    assert tap_cache.listing(a, CIFAR, arch) == list_taps(a, CIFAR)
    assert tap_cache.listing(b, CIFAR, same) == list_taps(a, CIFAR)
    assert traced == ["CifarResNet"]
    c, other = _resnet20(classes=10)
    assert other != arch and tap_cache.listing(c, CIFAR, other)[-1].shape == (10,)
    assert tap_cache.listing(a, (3, 16, 16), arch)[0].shape[1:] == (16, 16)  # another input: traced
    assert traced == ["CifarResNet"] * 3


def test_the_next_process_reads_the_listing_from_disk(cache, monkeypatch):
    traced, folder = cache
    model, arch = _resnet20()
    first = tap_cache.listing(model, CIFAR, arch)
    files = list(folder.glob("taps-*.json"))
    assert len(files) == 1 and (folder.stat().st_mode & 0o777) == 0o700
    monkeypatch.setattr(tap_cache, "_MEMORY", {})  # as in a new process
    assert tap_cache.listing(model, CIFAR, arch) == first
    assert traced == ["CifarResNet"]
    files[0].write_text(files[0].read_text()[:100])  # damaged, as if half written
    monkeypatch.setattr(tap_cache, "_MEMORY", {})
    assert tap_cache.listing(model, CIFAR, arch) == first
    assert traced == ["CifarResNet"] * 2 and json.loads(files[0].read_text())["taps"]


def test_no_key_or_no_cache_folder_means_a_trace_each_time(cache, monkeypatch):
    traced, folder = cache
    model, arch = _resnet20()
    tap_cache.listing(model, CIFAR, None)  # a plugin's model: its code may change while we run
    tap_cache.listing(model, CIFAR, None)
    assert traced == ["CifarResNet"] * 2
    monkeypatch.setenv("KDLANG_NO_CACHE", "1")
    tap_cache.listing(model, CIFAR, arch)
    assert not folder.exists() or not list(folder.glob("taps-*.json"))
    assert tap_cache.listing(model, CIFAR, arch) and traced == ["CifarResNet"] * 3  # memory still serves


def test_the_key_follows_the_code_that_defines_the_network(cache, monkeypatch):
    _, arch = _resnet20()
    key = tap_cache._key(arch, CIFAR)
    monkeypatch.setattr(tap_cache, "_sources_digest", lambda: "an edited zoo")
    assert tap_cache._key(arch, CIFAR) != key


def test_a_plugin_model_has_no_architecture_key(monkeypatch):
    from kdlang.library import extensions

    monkeypatch.setitem(extensions.MODELS, "acme.net", object())
    assert models.architecture("acme.net", 10, 3, {}) is None
    assert models.architecture("resnet20", 10, 3, {"x": [1, 2]}) == models.architecture("resnet20", 10, 3, {"x": [1, 2]})


def test_a_trace_leaves_the_random_stream_where_it_was(cache):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.Flatten(), nn.LazyLinear(2)).train()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    tap_cache.listing(net, (3, 8, 8), None)
    assert torch.equal(torch.get_rng_state(), before)
