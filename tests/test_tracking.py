"""Experiment tracking as a user reads it: TensorBoard event files and an MLflow store, each read
back with its own reader, for a finished run and for one interrupted and resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdlang import durable
from kdlang.cli import main

TWO_STAGE = Path(__file__).parent / "recipes" / "two_stage.kd"
QUICK = ["--set", "stage.teach.epochs=1", "--set", "stage.distill.epochs=2"]

pytest.importorskip("tensorboard")
mlflow = pytest.importorskip("mlflow")


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def expected_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """What the trackers must show: `STAGE/KEY` -> [(epoch, value)] from the committed metrics rows."""
    out: dict = {}
    for row in rows(run):
        for key, value in row.items():
            if key not in ("stage", "epoch") and isinstance(value, (int, float)):
                out.setdefault(f"{row['stage']}/{key}", []).append((row["epoch"], float(value)))
    return out


def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict = {}
    for events in sorted((run / "tensorboard").iterdir()):
        reader = EventAccumulator(str(events))
        reader.Reload()
        for tag in reader.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in reader.Scalars(tag))
    return {tag: sorted(points) for tag, points in found.items()}


def mlflow_client(store: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store.resolve().as_uri())


def compile_run(*args) -> int:
    return main(["compile", str(TWO_STAGE), "--run", *QUICK, *args])


def interrupt_at(monkeypatch, point: str, name: str, count: int) -> None:
    """Ctrl-C at the `count`-th `point` boundary of writing `name` (as a user's Ctrl-C would land)."""
    seen = []

    def boundary(at, path):
        if at == point and Path(path).name == name:
            seen.append(path)
            if len(seen) == count:
                raise KeyboardInterrupt

    monkeypatch.setattr(durable, "at_boundary", boundary)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A run logging to TensorBoard and to MLflow (a file store of its own), stopped by Ctrl-C after
    distill's first epoch was logged but before it was committed (its journal write), then resumed:
    the resumed run trains that epoch again, and no tracker may show it twice.
    Returns (run directory, store, the MLflow run's status while it was stopped)."""
    root = tmp_path_factory.mktemp("tracked")
    run, store = root / "run", root / "mlruns"
    with pytest.MonkeyPatch.context() as patch:
        interrupt_at(patch, "before", "journal.json", 4)
        assert compile_run("--out", str(run), "--log", "mlflow", "--mlflow-uri", str(store)) == 130
    record = json.loads((run / "mlflow.json").read_text())
    client = mlflow_client(store)
    stopped = client.get_run(record["run_id"]).info.status
    assert client.get_metric_history(record["run_id"], "distill/train/kd") == []  # in metrics.jsonl, never committed
    assert compile_run("--resume", str(run)) == 0  # the run directory says where it logs: no --log again
    assert json.loads((run / "mlflow.json").read_text()) == record
    return run, store, stopped


def test_tensorboard_holds_every_loss_term_and_metric_once_per_epoch(resumed):
    run, _, _ = resumed
    scalars = tensorboard_scalars(run)
    expected = expected_scalars(run)
    assert {"teach/train/ce", "distill/train/ce", "distill/train/kd", "distill/val/student/top1",
            "distill/test/student/top1", "teach/test/teacher/top1"} <= set(scalars)
    assert set(scalars) == set(expected)
    for tag, points in expected.items():
        assert [step for step, _ in scalars[tag]] == [step for step, _ in points], tag
        assert [v for _, v in scalars[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


def test_mlflow_holds_params_metrics_per_epoch_and_the_outputs(resumed):
    run, store, _ = resumed
    client = mlflow_client(store)
    record = json.loads((run / "mlflow.json").read_text())
    logged = client.get_run(record["run_id"])
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "run"
    assert client.get_experiment(logged.info.experiment_id).name == "two-stage KD, small enough to kill at every write"
    params = logged.data.params
    assert params["stage.distill.optimizer.lr"] == "0.05" and params["loss.distill.kd.1.kd.T"] == "4.0"
    assert params["stage.distill.epochs"] == "2" and params["runtime.seed"] == "0"
    for key, points in expected_scalars(run).items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(record["run_id"], key))
        assert [s for s, _ in history] == [s for s, _ in points], key
        assert [v for _, v in history] == pytest.approx([v for _, v in points], rel=1e-6), key
    artifacts = {a.path for folder in ("student", "report") for a in client.list_artifacts(record["run_id"], folder)}
    assert {"student/student.pt", "student/student.safetensors", "report/report.html",
            "report/report-teach.png", "report/report-distill.png"} <= artifacts


def test_a_resumed_run_continues_its_own_mlflow_run(resumed):
    run, store, stopped = resumed
    client = mlflow_client(store)
    record = json.loads((run / "mlflow.json").read_text())
    assert stopped == "KILLED"  # as MLflow marks a run stopped by Ctrl-C or SIGTERM
    experiment = client.get_run(record["run_id"]).info.experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment])] == [record["run_id"]]


def test_a_misspelt_logger_is_a_diagnostic_with_the_fix(tmp_path, capsys):
    recipe = tmp_path / "r.kd"
    recipe.write_text(TWO_STAGE.read_text() + '\nruntime(log=["mlfow"])\n')
    assert main(["check", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert 'did you mean "mlflow"?' in err and "`log=` takes a list of items" in err


def test_the_tracking_uri_comes_from_the_environment_else_a_local_mlruns(tmp_path, monkeypatch):
    from kdlang.runtime.tracking import resolve_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_uri(None) == "sqlite:///elsewhere.db"
    assert resolve_uri("http://tracking.example:5000") == "http://tracking.example:5000"
