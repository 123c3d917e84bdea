"""`kdlang export RUN_DIR --format FORMAT`: a finished run's student in a format to deploy.

The student is rebuilt from `RUN_DIR/student.pt` alone (its zoo name, classes, in_channels, keyword
arguments and weights); the writing is `kdlang.runtime.export`'s.
"""

from __future__ import annotations

from pathlib import Path


def run_export(run_dir: str, fmt: str, output: str | None, input_shape: str | None, usage_error) -> int:
    from kdlang.checkpoint_io import CheckpointError
    from kdlang.runtime import checkpoints, export

    folder = Path(run_dir)
    if not folder.is_dir():
        raise usage_error(f"{run_dir} is not a folder; name a run directory (the --out of `kdlang compile R.kd --run`)")
    student = folder / "student.pt"
    if not student.is_file():
        started = (folder / "journal.json").exists()
        why = ("the run has not finished; finish it with `kdlang compile R.kd --run --resume " + run_dir + "`"
               if started else "it is not a kdlang run; name the --out folder of `kdlang compile R.kd --run`")
        raise usage_error(f"{run_dir} holds no student.pt: {why}")
    try:
        payload = checkpoints.load(student)
    except CheckpointError as exc:
        raise usage_error(str(exc)) from None
    fix = export.missing_packages(fmt)
    if fix:
        raise usage_error(f"exporting to {fmt} needs packages this environment lacks: {fix}")
    try:
        shape = _shape(input_shape, payload, usage_error) if input_shape else export.input_shape(payload)
    except export.ExportError as exc:
        raise usage_error(f"{student}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise usage_error(f"{student}: cannot tell the model's input shape ({exc}); give --input C,H,W") from None
    path = Path(output) if output else export.target(student, fmt)
    try:
        export.write(fmt, path, payload, name="student", shape=shape, source=student)
    except export.ExportError as exc:
        raise usage_error(str(exc)) from None
    except OSError as exc:
        raise usage_error(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from None
    print(f"wrote {path}")
    return 0


def _shape(text: str, payload: dict, usage_error) -> tuple[int, int, int]:
    """`--input C,H,W`, whose C must be the student's in_channels."""
    try:
        shape = tuple(int(x) for x in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise usage_error(f"bad --input {text!r}: give C,H,W such as 3,32,32")
    channels = payload.get("in_channels")
    if channels is not None and shape[0] != channels:
        raise usage_error(f"--input {text} has {shape[0]} channel(s), but the student takes {channels}; "
                          f"give --input {channels},{shape[1]},{shape[2]}")
    return shape  # type: ignore[return-value]
