"""A device the machine lacks is refused before anything runs, naming the devices it has."""

from pathlib import Path

import pytest
import torch

from kdlang.cli import main

TINY = Path(__file__).parent / "recipes" / "tiny_mas.kd"
MISSING = ["cuda:99", "garbage"] + ([] if torch.cuda.is_available() else ["cuda"]) \
    + ([] if torch.backends.mps.is_available() else ["mps"])


@pytest.mark.parametrize("device", MISSING)
def test_a_device_the_machine_lacks_is_one_line_and_exit_2(tmp_path, capsys, device):
    out = tmp_path / "run"
    assert main(["compile", str(TINY), "--run", "--device", device, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kdlang: --device {device}: ") and "this machine has cpu" in err
    assert err.count("\n") == 1 and not out.exists()


def test_the_recipes_device_is_named_as_the_recipe_wrote_it(tmp_path, capsys):
    path = tmp_path / "r.kd"
    path.write_text(TINY.read_text() + '\nruntime(device="cuda:99")\n')
    assert main(["compile", str(path), "--run", "--out", str(tmp_path / "run")]) == 2
    assert 'kdlang: runtime(device="cuda:99"): ' in capsys.readouterr().err
