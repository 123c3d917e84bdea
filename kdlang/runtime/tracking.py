"""Experiment trackers: the run's metrics rows in TensorBoard and MLflow, as users read them there.

Every backend is one small class behind `Tracker`, fed by `MetricsLog` (the run's single stream of
rows) as the run directory commits them: `restore(rows)` brings the backend in line with the rows
committed so far (all of them on a resume, none on a fresh run), `log(row)` adds one committed row,
`finish(files)` attaches the run's outputs, `close(status)` ends it. The run directory stays the
record and a tracker mirrors it: a resumed run's tracker shows exactly the committed epochs, once.

TensorBoard (`tensorboard/` in the run directory) is written whenever the package is installed;
`runtime(log=["tensorboard"])` insists on it. MLflow is opt-in (`runtime(log=["mlflow"])` or
`--log mlflow`); its run id is kept in the run directory (`mlflow.json`) so that `--resume` continues
the same MLflow run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

from kdlang import durable
from kdlang.library.signatures import LOGGERS

MLFLOW_RECORD = "mlflow.json"
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # logger -> the package it needs


def check_loggers(names) -> None:
    """Refuse unknown loggers and loggers whose package is missing, before anything trains."""
    if not isinstance(names, tuple) or not all(name in LOGGERS for name in names):
        raise ValueError(f"runtime(log=...) is a list of {', '.join(repr(n) for n in LOGGERS)}, not {names!r}")
    for name in dict.fromkeys(names):
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise ValueError(f'log "{name}" needs the {PACKAGES[name]} package: pip install "kdlang[{name}]"')


def scalars(row: dict) -> dict[str, float]:
    """A metrics row as tracker scalars: `STAGE/KEY` -> value, every number but the row's position."""
    stage = row["stage"]
    return {f"{stage}/{key}": float(value) for key, value in row.items()
            if key not in ("stage", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool)}


def step(row: dict) -> int:
    """The x of a row: its epoch within its stage (an evaluation-only stage's one row is 0)."""
    return int(row["epoch"])


class Tracker:
    """One backend. The defaults do nothing, so a backend implements only what it has."""

    name = "tracker"

    def restore(self, rows: list[dict]) -> None:
        """Show exactly `rows`, the committed ones (called once, before training)."""

    def log(self, row: dict) -> None:
        """Add one epoch's row."""

    def finish(self, files: list[Path]) -> None:
        """The run ended well: attach its outputs."""

    def close(self, status: str) -> None:
        """The run stops ("FINISHED", "FAILED" or "KILLED"): release what the backend holds."""


class TensorBoardTracker(Tracker):
    """Scalars per loss term and per metric, tagged `STAGE/train/TERM`, `STAGE/val/HEAD/top1`, ... by
    epoch. A resume rewrites the event files from the committed rows: event files are appended to
    and cannot be asked what they hold, and a process killed mid-write leaves them as it was."""

    name = "tensorboard"

    def __init__(self, run_dir: Path):
        self.folder = Path(run_dir) / "tensorboard"
        self._writer = None

    def restore(self, rows: list[dict]) -> None:
        if self.folder.exists():  # what a crash left of uncommitted epochs goes too
            shutil.rmtree(self.folder)
        for row in rows:
            self.log(row)

    def log(self, row: dict) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder))
        for tag, value in scalars(row).items():
            self._writer.add_scalar(tag, value, step(row))
        self._writer.flush()

    def close(self, status: str) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MLflowTracker(Tracker):
    """An MLflow run: the operative recipe's values as params, every scalar per epoch (step = the
    epoch), and at the end the exported student and the report as artifacts.

    The client API (not mlflow's global active run) keeps the run explicit. A point already in the
    MLflow run (a process killed between a commit and its logging) is not logged again.
    """

    name = "mlflow"

    def __init__(self, run_dir: Path, *, uri: str | None, experiment: str, run_name: str, params: dict):
        from mlflow.tracking import MlflowClient

        self.record = Path(run_dir) / MLFLOW_RECORD
        known = json.loads(self.record.read_text(encoding="utf-8")) if self.record.exists() else {}
        self.uri = resolve_uri(uri or known.get("tracking_uri"))
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id = self._continue(known.get("run_id")) if known.get("tracking_uri") == self.uri else None
        if self.run_id is None:
            self.run_id = self._start(experiment, run_name, params, Path(run_dir))
        self._seen: set[tuple[str, int]] = set()

    def _continue(self, run_id: str | None) -> str | None:
        """The recorded MLflow run, set running again; None when this store does not hold it."""
        from mlflow.exceptions import MlflowException

        if run_id is None:
            return None
        try:
            self.client.get_run(run_id)
        except MlflowException:
            print(f"kdlang: warning: MLflow run {run_id} is not in {self.uri}; logging to a new run", file=sys.stderr)
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _start(self, experiment: str, run_name: str, params: dict, run_dir: Path) -> str:
        from mlflow.entities import Param
        from kdlang.version import __version__

        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        run = self.client.create_run(experiment_id, run_name=run_name,
                                     tags={"kdlang.version": __version__, "kdlang.run_dir": str(run_dir.resolve())})
        items = [Param(key, str(value)[:6000]) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run.info.run_id, params=items[start:start + 100])
        durable.write_text(self.record, json.dumps({"tracking_uri": self.uri, "run_id": run.info.run_id}, indent=1) + "\n")
        return run.info.run_id

    def restore(self, rows: list[dict]) -> None:
        keys = self.client.get_run(self.run_id).data.metrics  # every key logged, committed or not
        for key in keys:
            self._seen |= {(key, point.step) for point in self.client.get_metric_history(self.run_id, key)}
        for row in rows:
            self.log(row)

    def log(self, row: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        fresh = [(key, value) for key, value in scalars(row).items() if (key, step(row)) not in self._seen]
        if fresh:
            self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step(row)) for key, value in fresh])
            self._seen |= {(key, step(row)) for key, _ in fresh}

    def finish(self, files: list[Path]) -> None:
        for path in files:
            if path.exists():
                folder = "report" if path.name.startswith("report") else "student" if path.name.startswith("student") else None
                self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def resolve_uri(given: str | None) -> str:
    """The tracking URI: the one given (`--mlflow-uri`, `runtime(mlflow_uri=)`, or a resumed run's),
    else `MLFLOW_TRACKING_URI`, else `./mlruns`. A local file store is allowed explicitly: MLflow 3
    refuses it unless asked (it recommends `sqlite:///mlflow.db`, which works here too)."""
    uri = given or os.environ.get("MLFLOW_TRACKING_URI") or "mlruns"
    if "://" not in uri and not uri.startswith("file:"):
        uri = Path(uri).resolve().as_uri()  # a folder: absolute, so a resume from elsewhere finds it
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def default_trackers(run_dir: Path) -> list[Tracker]:
    """What every run writes: TensorBoard event files, when the package is installed."""
    return [TensorBoardTracker(run_dir)] if importlib.util.find_spec("tensorboard") is not None else []


def requested_trackers(run_dir: Path, names, *, uri: str | None = None, experiment: str = "kdlang",
                       params: dict | None = None) -> list[Tracker]:
    """The opt-in trackers `names` asks for (MLflow; TensorBoard is a default tracker). A run that
    logged to MLflow keeps doing so when it is resumed, asked again or not."""
    continued = (Path(run_dir) / MLFLOW_RECORD).exists()
    if "mlflow" not in names and continued and importlib.util.find_spec("mlflow") is None:
        print(f"kdlang: warning: {run_dir} logged to MLflow, which is no longer installed; not logging there",
              file=sys.stderr)
        return []
    if "mlflow" not in names and not continued:
        return []
    return [MLflowTracker(run_dir, uri=uri, experiment=experiment, run_name=Path(run_dir).resolve().name,
                          params=params or {})]
