"""User code through the registered door: a plugin's model, data set and loss are checked, drawn,
traced and trained like built-ins, and a recipe that names a plugin not enabled is told how.

The plugin is `tests/plugins/acme_kd` (namespace `acme`); commands run as a user runs them, in a
fresh process, enabled by `--plugin`, by `KDLANG_PLUGINS` or by an installed entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kdlang
from kdlang.check import check_text
from kdlang.library import extensions
from kdlang.register import PluginError

TESTS = Path(__file__).parent
PLUGINS = TESTS / "plugins"
RECIPE = TESTS / "recipes" / "plugin_kd.kd"


def kdlang_cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(TESTS.parent)]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "kdlang", *map(str, args)], capture_output=True, text=True,
                          env=environment, cwd=cwd, timeout=600)


def test_every_command_that_reads_recipes_takes_plugin(tmp_path, monkeypatch, capsys):
    """In this process (enabling imports the plugin once; the same code path as a fresh one)."""
    from kdlang.cli import main

    monkeypatch.syspath_prepend(str(PLUGINS))
    assert main(["check", "--plugin", "acme_kd", str(RECIPE)]) == 0
    assert capsys.readouterr().out.strip() == f"{RECIPE}: ok"
    assert main(["render", "--plugin", "acme_kd", str(RECIPE), "-o", str(tmp_path / "r.dot")]) == 0
    assert "acme.tinynet" in (tmp_path / "r.dot").read_text()
    assert main(["taps", "--plugin", "acme_kd", "acme.tinynet"]) == 0
    assert "pool    AdaptiveAvgPool2d  16x1x1" in capsys.readouterr().out
    assert main(["taps", "--plugin", "acme_kd", "--list"]) == 0
    assert "acme.tinynet  (plugin acme_kd)" in capsys.readouterr().out
    assert main(["compile", "--plugin", "acme_kd", str(RECIPE), "--print-ir"]) == 0
    assert "acme.cosine[distill.cos#1](%proj.out, %t_feat, scale=2)" in capsys.readouterr().out


def test_a_plugin_recipe_trains_and_exports_like_a_builtin(tmp_path):
    out = tmp_path / "run"
    done = kdlang_cli("compile", RECIPE, "--run", "--out", out, env={"KDLANG_PLUGINS": "acme_kd"})
    assert done.returncode == 0, done.stderr
    assert "| distill | student | 2 |" in done.stdout
    exported = torch.load(out / "student.pt", weights_only=True)
    assert exported["model"] == "acme.tinynet" and exported["classes"] == 3
    sys.path.insert(0, str(PLUGINS))
    try:
        import acme_kd  # noqa: F401  (registers acme.*, as the run did)
    finally:
        sys.path.remove(str(PLUGINS))
    student = kdlang.models.build("acme.tinynet", num_classes=3, in_channels=3, width=4)
    student.load_state_dict(exported["state_dict"])  # plain PyTorch reads it back
    assert student(torch.zeros(2, 3, 16, 16)).shape == (2, 3)


def test_an_installed_package_enables_its_plugin_through_its_entry_point(tmp_path):
    dist = tmp_path / "acme_kd-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-kd\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kdlang.plugins]\nacme = acme_kd\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(PLUGINS), str(TESTS.parent)])}
    checked = kdlang_cli("check", RECIPE, env=env)
    assert checked.returncode == 0, checked.stderr


def test_a_plugin_not_enabled_is_a_positioned_error_with_the_fix():
    text = RECIPE.read_text().replace("acme.", "nobody.")
    checked = check_text(text, "r.kd")
    found = [(d.span.line, d.span.col, d.message) for d in checked.errors]
    assert found == [
        (5, 6, "unknown data set `nobody.stripes`"),
        (7, 17, "unknown model namespace `nobody` in `nobody.tinynet`"),
        (8, 17, "unknown model namespace `nobody` in `nobody.tinynet`"),
        (14, 27, "unknown branch kind `nobody.project`"),
        (27, 20, "unknown loss function `nobody.cosine`"),
    ]
    assert all("--plugin MODULE" in d.hint and "KDLANG_PLUGINS" in d.hint for d in checked.errors)


def test_a_plugin_that_cannot_load_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("import kdlang.register as r\n@r.model('zoo.mine')\n"
                                               "def mine(num_classes=10, in_channels=3):\n    pass\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS.parent)])}
    broken = kdlang_cli("check", "--plugin", "broken_plugin", RECIPE, env=env)
    assert broken.returncode == 2 and broken.stderr.count("\n") == 1, broken.stderr
    assert "namespace `zoo` is kdlang's" in broken.stderr
    missing = kdlang_cli("check", "--plugin", "no_such_plugin", RECIPE)
    assert missing.returncode == 2 and "cannot import plugin `no_such_plugin`" in missing.stderr


def test_registration_refuses_what_kdlang_could_not_use():
    with pytest.raises(PluginError, match="must take in_channels"):
        extensions.model("test.net")(lambda num_classes=10: None)
    with pytest.raises(PluginError, match="NAMESPACE.NAME"):
        extensions.model("net")(lambda num_classes=10, in_channels=3: None)
    with pytest.raises(PluginError, match="need defaults"):
        extensions.loss("test.bad")(lambda s_shape=None, t_shape=None, num_data=None, *, gamma: None)
    with pytest.raises(PluginError, match="takes in_shape and classes"):
        extensions.branch("test.head")(lambda width=3: None)
    assert "test.net" not in extensions.MODELS


def test_the_checker_validates_a_plugin_call_from_its_signature(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    import acme_kd  # noqa: F401

    text = RECIPE.read_text().replace("acme.tinynet(width=16)", "acme.tinynet(widht=16)") \
        .replace("acme.tinynet(width=4)", "acme.tinynt(width=4)").replace("scale=2", "scael=2")
    checked = check_text(text, "r.kd")
    messages = [(d.span.line, d.message, d.hint) for d in checked.errors]
    assert (7, "unknown keyword argument `widht` for model `acme.tinynet`", "did you mean `width`?") in messages
    assert (8, "plugin namespace `acme` has no model `tinynt`", "did you mean `tinynet`?") in messages
    assert any(line == 27 and "scael" in message for line, message, _ in messages), messages
