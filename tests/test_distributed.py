"""DDP under torchrun: 2 CPU processes (gloo) equal one process with the same global batch.

The stage trains granularity branches on a frozen teacher loaded from a file: no BatchNorm is in
training mode, so the equivalence is exact up to float summation order (on CPU, BatchNorm
statistics would be per rank; SyncBatchNorm is used on GPUs).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

import kdlang
from kdlang.runtime import checkpoints

RECIPE = """
kdlang 1
recipe "branches on a frozen teacher, for DDP equivalence"
data synthetic(shape=[1, 28, 28], classes=4, size=96, test_size=32, batch=16, val=32)
model teacher = zoo.cnn_small() from "{weights}" frozen
tap t_feat   = teacher.pool
tap t_logits = teacher.output
granularity mg on t_feat {{
  level fine   code=8  T=2
  level coarse code=16 T=4
}}
stage analyze(epochs=2) {{
  train mg
  optimizer sgd(lr=0.1, momentum=0.9)
  loss levels = sum(for l in mg.levels: kd(l.logits, t_logits, T=l.T) + ce(l.logits, label))
}}
report top1 on test, select last on test
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    torch.manual_seed(1)
    weights = tmp_path / "teacher.pt"
    torch.save(kdlang.models.build("cnn_small", num_classes=4, in_channels=1).state_dict(), weights)
    recipe = tmp_path / "ddp.kd"
    recipe.write_text(RECIPE.format(weights=weights))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "kdlang", "compile", str(recipe), "--run",
                             "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={free_port()}", "-m", "kdlang", "--", "compile", str(recipe), "--run",
                             "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert double.returncode == 0, double.stderr

    one = checkpoints.load(tmp_path / "one" / "last.pt")["components"]["mg"]
    two = checkpoints.load(tmp_path / "two" / "last.pt")["components"]["mg"]
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5), key

    rows = lambda run: [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(rows("one"), rows("two")):
        assert abs(a["train/levels"] - b["train/levels"]) < 1e-4
        assert a["test/mg.fine/top1"] == b["test/mg.fine/top1"]  # counts summed over both ranks
    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2
    assert double.stdout.count("| analyze |") == 2  # one table, from rank 0 only (two heads)
