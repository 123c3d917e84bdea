"""Generate the library tables of docs/language.md from kdlang's registries.

    python docs/gen_tables.py            # print the tables (Markdown)
    python docs/gen_tables.py --write    # replace the generated section of docs/language.md

The section sits between the BEGIN and END markers below; tests/test_docs.py fails when the pasted
text differs from what this script prints, so run it with --write after changing a registry.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

BEGIN = "<!-- BEGIN GENERATED TABLES: python docs/gen_tables.py --write -->"
END = "<!-- END GENERATED TABLES -->"
LANGUAGE_MD = Path(__file__).resolve().parent / "language.md"


# ---- value formatting ------------------------------------------------------------------------


def value(v) -> str:
    """A default as a recipe would spell it."""
    from kdlang.library.signatures import Signature

    if v is Signature.REQUIRED or v is inspect.Parameter.empty:
        return "required"
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return type(v).__name__  # a Python object (e.g. a norm layer): not settable from a recipe


def keywords(mapping: dict) -> str:
    if not mapping:
        return "none"
    return ", ".join(f"`{k}={value(v)}`" if value(v) != "required" else f"`{k}` (required)"
                     for k, v in mapping.items())


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---- one section per registry ------------------------------------------------------------------


def losses_section() -> str:
    from kdlang import losses

    rows = []
    for name in losses.names():
        info = losses.info(name)
        reads = "(x, label)" if info.unary else "(student, teacher)"
        if info.multi:
            reads += ", each a tensor or a list"
        extra = ", ".join(info.needs)
        rows.append([f"`{name}`", reads, keywords(info.hyper), extra or "-", info.summary, info.shape_rule,
                     info.paper])
    return "### Losses\n\n" + table(
        ["loss", "reads", "hyperparameters (default)", "uses", "what it computes", "shapes", "reference"], rows)


def models_section() -> str:
    from kdlang import models
    from kdlang.library.models.torchvision_models import tv_names

    rows = []
    for name in models.names():
        info = models.info(name)
        options = {k: v for k, v in info.kwargs.items() if k not in ("num_classes", "in_channels")}
        rows.append([f"`zoo.{name}`", info.family, "x".join(map(str, info.input_size)), keywords(options),
                     info.description])
    tv = ", ".join(f"`{n}`" for n in tv_names())
    return ("### Models\n\nEvery model also takes `classes=` and `in_channels=` (both default to the data set's).\n\n"
            + table(["model", "family", "default input", "options (default)", "description"], rows)
            + f"\n\nTorchvision models, written `tv.NAME`, randomly initialised: {tv}.")


def datasets_section() -> str:
    from kdlang import datasets
    from kdlang.library.catalog import DATA_LOADER_KWARGS
    from kdlang.library.datasets import COMMON_KWARGS

    rows = []
    for name in datasets.names():
        info = datasets.info(name)
        specific = {k: v for k, v in info.kwargs.items() if k not in COMMON_KWARGS}
        classes = str(info.num_classes) if info.num_classes else "one per folder"
        rows.append([f"`{name}`", "x".join(map(str, info.input_shape)), classes,
                     keywords(specific), info.description])
    common = {**COMMON_KWARGS, **DATA_LOADER_KWARGS}
    return ("### Data sets\n\n" + table(["data set", "input", "classes", "own keywords (default)", "description"], rows)
            + "\n\nKeywords every data set takes (default): " + keywords(common) + ".")


def augmentations_section() -> str:
    from kdlang.datasets import AUGMENTATIONS
    from kdlang.library.datasets import transforms

    rows = []
    for name, signature in AUGMENTATIONS.items():
        params = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={value(p.default)}"
                           for p in signature.parameters.values())
        kind = getattr(transforms, str(signature.return_annotation), None)
        doc = inspect.getdoc(kind).splitlines()[0] if kind is not None and kind.__doc__ else ""
        rows.append([f"`{name}({params})`", doc.replace("``", "`")])
    return "### Augmentations\n\n" + table(["augmentation", "what it does"], rows)


def positional(param: str) -> str:
    """`endpoints:arrow` prints as `a -> b`; other positional parameters by name."""
    name, _, kind = param.partition(":")
    return "a -> b" if kind == "arrow" else name


def signature_rows(table_: dict, outputs: dict | None = None) -> list[list[str]]:
    rows = []
    for name, sig in table_.items():
        call = f"`{name}(" + ", ".join(positional(p) for p in sig.positional) + ")`"
        row = [call, keywords(sig.keywords)]
        if outputs is not None:
            row.append(", ".join(f"`{o}`" for o in outputs.get(name, ())))
        rows.append(row + [sig.doc])
    return rows


def schedules_section() -> str:
    from kdlang.library.schedules import FUNCTIONS

    rows = signature_rows({name: sig for name, (_, sig) in FUNCTIONS.items()})
    return "### Schedules\n\n" + table(["schedule", "keywords (default)", "value at time t"], rows)


def optimizers_section() -> str:
    from kdlang.library.signatures import LR_SCHEDULES, OPTIMIZERS

    return ("### Optimizers\n\n" + table(["optimizer", "keywords (default)", "torch class"], signature_rows(OPTIMIZERS))
            + "\n\n### Learning-rate schedules\n\n"
            + table(["lr", "keywords (default)", "multiplier of the optimizer's lr"], signature_rows(LR_SCHEDULES)))


def branches_section() -> str:
    from kdlang.library.catalog import BRANCH_OUTPUTS, BRANCHES

    return "### Branch kinds\n\n" + table(["branch", "keywords (default)", "outputs", "module"],
                                           signature_rows(BRANCHES, BRANCH_OUTPUTS))


def arguments_section() -> str:
    from kdlang.graph.symbols import DEFAULT_DATA
    from kdlang.library import signatures as s

    stage = keywords(s.STAGE_ARGS.keywords).replace(f'`data="{DEFAULT_DATA}"`', f"`data={DEFAULT_DATA}`")
    stage = stage.replace("`epochs` (required)", "`epochs` (required; `0` or left out in an evaluation stage)")
    rows = [
        ["`stage NAME(...)`", stage],
        ["`level NAME ...`", keywords(s.LEVEL_ARGS.keywords)],
        ["`runtime(...)`", keywords(s.RUNTIME_ARGS.keywords)],
        ["`mix([...], ...)`", keywords(s.COMBINATORS["mix"].keywords)],
        ["`report` metrics", ", ".join(f"`{m}`" for m in s.METRICS)],
        ["`report` splits", ", ".join(f"`{m}`" for m in s.SPLITS)],
        ["`select` policies", ", ".join(f"`{m}`" for m in s.SELECT_POLICIES)],
        ["`amp=` modes", ", ".join(value(m) for m in s.AMP_MODES)],
    ]
    return "### Statement arguments\n\n" + table(["where", "accepted (default)"], rows)


SECTIONS = (losses_section, models_section, datasets_section, augmentations_section, schedules_section,
            optimizers_section, branches_section, arguments_section)


def generate() -> str:
    return "\n\n".join(section() for section in SECTIONS) + "\n"


def pasted(text: str) -> str:
    """The generated section as it stands in a document (between the markers, exclusive)."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n") + "\n"


def write(path: Path = LANGUAGE_MD) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    path.write_text(text[:start] + "\n\n" + generate() + "\n" + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    elif sys.argv[1:]:
        sys.exit("usage: python docs/gen_tables.py [--write]")
    else:
        sys.stdout.write(generate())
