"""A run directory that knows what it is: the recipe that made it, and what it has committed.

`journal.json` is the run's one commit point. Each finished epoch writes its full state and, when
the selection improved, the selected weights to new generation-numbered files under
`checkpoints/`, appends its metrics row, and only then replaces the journal to point at them. A
process that dies at any instant leaves either the old journal (and files it no longer needs, which
the next open removes) or the new one: `--resume` continues from exactly the last committed epoch.
`last.pt` and `best.pt` are links to the committed files, kept for people; resume never reads them.

The journal also records the run's identity (a digest of the recipe as it means, not as it is
formatted, with the seed, the smoke flag, kdlang's version and the checkpoints it loads), so a run
directory refuses to be resumed by another recipe and a fresh run refuses to overwrite it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import attrs

from kdlang import durable
from kdlang.runtime import checkpoints

JOURNAL = "journal.json"
FORMAT = 1
# Everything a run writes (names or glob patterns); `--overwrite` removes these and nothing else.
ARTEFACTS = ("journal.json", "checkpoints", "last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "recipe.kd",
             "run.json", "recipe.dot", "recipe.svg", "summary.md", "student.pt", "student.safetensors",
             "student.onnx", "student.torchscript.pt", "models", "components", "tensorboard",
             "report.html", "report-*.png", "mlflow.json")


class RunDirError(Exception):
    """A run directory that cannot be used as asked; the message says what to do instead."""


@attrs.frozen
class Identity:
    recipe: str        # path of the recipe as given
    title: str
    digest: str        # of the program's meaning, seed, smoke flag and kdlang version
    inputs: dict       # checkpoint file -> sha256: the weights the run starts from

    @classmethod
    def of(cls, recipe, *, seed: int, smoke: bool) -> "Identity":
        from kdlang.version import __version__

        meaning = recipe.program.meaning  # spans and comments take no part
        text = json.dumps({"program": meaning, "seed": seed, "smoke": smoke, "kdlang": __version__})
        return cls(str(recipe.path), recipe.title, hashlib.sha256(text.encode()).hexdigest()[:16],
                   {str(p): _file_digest(p) for p in recipe.checkpoint_files()})

    def to_json(self) -> dict:
        return attrs.asdict(self)

    def mismatch(self, other: "Identity") -> str | None:
        """Why a run made under `other` is not this run, or None when it is."""
        if other.digest != self.digest:
            return f"it was made by {other.recipe} (\"{other.title}\") with other values"
        changed = [f for f, d in self.inputs.items() if other.inputs.get(f) not in (None, d)]
        if changed:
            return f"the checkpoint {changed[0]} changed since it started"
        return None


@attrs.define
class Journal:
    """What the run has committed: the files to resume from and how far it got."""

    identity: dict
    generation: int = 0
    state: str | None = None        # checkpoints/state-N.pt: everything a resume needs
    best: str | None = None         # checkpoints/best-N.pt: the current stage's selected weights
    metrics_rows: int = 0
    finished: bool = False

    @classmethod
    def read(cls, folder: Path) -> "Journal":
        path = folder / JOURNAL
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.pop("format") != FORMAT:
                raise ValueError("another journal format")
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RunDirError(f"{path} is damaged ({exc}); start afresh with --overwrite") from None

    def write(self, folder: Path) -> None:
        durable.write_text(folder / JOURNAL, json.dumps({"format": FORMAT, **attrs.asdict(self)}, indent=1) + "\n")


class RunDirectory:
    """The run directory of one process (only the main process writes; every rank reads)."""

    def __init__(self, folder: Path, journal: Journal, *, writer: bool = True):
        self.folder = Path(folder)
        self.journal = journal
        self.writer = writer

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: Path, identity: Identity, *, overwrite: bool = False, record=None) -> "RunDirectory":
        """A new run in `folder`, which must be absent or empty unless `overwrite` (which removes
        only what a run writes). `record(folder)` writes the run's description first: the journal
        comes last, so a folder with a journal always holds its record."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise RunDirError(f"--out {folder} is a file; name a folder for the run")
        leftovers = [p for p in folder.iterdir()] if folder.is_dir() else []
        if leftovers and not overwrite:
            what = "a kdlang run" if (folder / JOURNAL).exists() or (folder / "last.pt").exists() else "files"
            raise RunDirError(f"{folder} already holds {what}; continue it with --resume {folder}, "
                              f"replace it with --overwrite, or name another --out")
        if overwrite:
            for name in ARTEFACTS:
                named = list(folder.glob(name)) if "*" in name else [folder / name]
                for path in [*named, *folder.glob(f"{name}.*.tmp")]:  # and what an interrupted write left
                    _remove(path)
        folder.mkdir(parents=True, exist_ok=True)
        if record is not None:
            record(folder)
        run = cls(folder, Journal(identity.to_json()))
        run.journal.write(folder)
        return run

    @classmethod
    def resume(cls, folder: Path, identity: Identity, *, force: bool = False, record=None) -> "RunDirectory":
        """The run in `folder`, made by the same recipe (or, with `force`, by any: then `record`
        rewrites the run's description for the recipe that continues it)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise RunDirError(f"--resume {folder}: no such run directory; start a run with --out {folder}")
        if not (folder / JOURNAL).exists():
            older = " (made by an older kdlang, which kept no journal)" if (folder / "last.pt").exists() else ""
            raise RunDirError(f"--resume {folder}: not a kdlang run{older}; start afresh with --out DIR "
                              "(or --overwrite)")
        journal = Journal.read(folder)
        why = identity.mismatch(Identity(**journal.identity))
        if why and not force:
            raise RunDirError(f"--resume {folder}: {why}; run that recipe to continue it, add --force to "
                              "continue with this recipe anyway, or start afresh with --out DIR")
        if why:
            if record is not None:
                record(folder)
            journal.identity = identity.to_json()
            journal.write(folder)
        run = cls(folder, journal)
        run.tidy()
        return run

    @classmethod
    def follow(cls, folder: Path) -> "RunDirectory":
        """The run as another rank sees it (after the main rank opened it): reads, never writes."""
        return cls(folder, Journal.read(Path(folder)), writer=False)

    # ---- reading -------------------------------------------------------------------------
    def load_state(self) -> dict | None:
        return checkpoints.load(self.folder / self.journal.state) if self.journal.state else None

    def load_best(self) -> dict | None:
        return checkpoints.load(self.folder / self.journal.best) if self.journal.best else None

    # ---- committing ----------------------------------------------------------------------
    def commit(self, state: dict, *, best: dict | None = None, keep_best: bool = True, metrics=None) -> None:
        """Make `state` (and `best`, if given; with `keep_best` false the stage has no selection
        yet) the run's committed position. `metrics` is the MetricsLog whose rows are now final."""
        if not self.writer:
            return
        journal = attrs.evolve(self.journal, generation=self.journal.generation + 1)
        journal.state = f"checkpoints/state-{journal.generation:06d}.pt"
        checkpoints.save(self.folder / journal.state, state)
        if best is not None:
            journal.best = f"checkpoints/best-{journal.generation:06d}.pt"
            checkpoints.save(self.folder / journal.best, best)
        elif not keep_best:
            journal.best = None
        if metrics is not None:
            journal.metrics_rows = len(metrics.rows)
        journal.write(self.folder)  # the commit point
        self.journal = journal
        self._publish()
        if metrics is not None:
            metrics.committed(journal.metrics_rows)  # the trackers show committed rows only

    def mark_finished(self) -> None:
        if self.writer:
            self.journal.finished = True
            self.journal.write(self.folder)

    def tidy(self) -> None:
        """Remove what an interrupted process left that no commit points at (its temp files and an
        uncommitted epoch's checkpoints), and re-publish `last.pt`/`best.pt`."""
        if self.writer:
            for path in self.folder.rglob("*.tmp"):
                _remove(path)
            self._publish()

    def _publish(self) -> None:
        """Point `last.pt` and `best.pt` at the committed files; drop every other checkpoint file."""
        for name, committed in (("last.pt", self.journal.state), ("best.pt", self.journal.best)):
            if committed:
                durable.link_or_copy(self.folder / committed, self.folder / name)
        keep = {self.journal.state, self.journal.best}
        store = self.folder / "checkpoints"
        for path in sorted(store.glob("*.pt")) if store.is_dir() else ():
            if f"checkpoints/{path.name}" not in keep:
                path.unlink()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
