"""CPU bf16 autocast is watched against fp32 every epoch: reported, and stopped when it loses accuracy.

The trap of design §5 (BatchNorm after convolutions whose biases swamp the signal) is built on
purpose by the acme test plugin's `biasednet`: fp32 learns the stripes, bf16 cannot see them.
"""

from __future__ import annotations

import json
from pathlib import Path

import processes

TESTS = Path(__file__).parent
RECIPE = """\
kdlang 1
recipe "bf16 on a CPU"
data acme.stripes(size=640, batch=32, val=64)
model student = acme.{model}()
tap s_logits = student.output
stage train(epochs=1) {{
  train student
  optimizer sgd(lr=0.1, momentum=0.9)
  loss ce = ce(s_logits, label)
}}
report top1 on test, select best on val
runtime(amp="bf16", device="cpu")
"""


def train(tmp_path: Path, model: str) -> tuple[processes.Done, Path]:
    recipe = tmp_path / f"{model}.kd"
    recipe.write_text(RECIPE.format(model=model))
    out = tmp_path / "run"
    done = processes.kdlang("compile", recipe, "--run", "--out", out, "--plugin", "acme_kd", folder=tmp_path / "log",
                            path=(TESTS / "plugins",), timeout=300)
    return done, out


def test_bf16_that_erases_batchnorm_s_input_stops_the_run_with_the_fix(tmp_path):
    done, out = train(tmp_path, "biasednet")
    assert done.code == 1, done.err
    message = done.err.strip().splitlines()[-1]
    assert message.startswith("kdlang: bf16 autocast lost ")
    assert "in a 50-step probe before stage train trained" in message and 'runtime(amp="off")' in message
    assert "no checkpoint was written yet" in message  # the untrusted epoch was not committed
    assert "Traceback" not in done.err


def test_bf16_that_keeps_fp32_s_accuracy_trains_and_records_the_gap(tmp_path):
    done, out = train(tmp_path, "tinynet")
    assert done.code == 0, done.err
    assert "bf16 parity of student on 64 held-out images: fp32" in done.out
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    gaps = [row["bf16_gap"] for row in rows]
    assert len(gaps) == 1 and all(abs(gap) <= 2.0 for gap in gaps)
