"""Generate the tables of docs/methods.md from the loss registry and the CIFAR-100 recipe library.

    python docs/gen_methods.py            # print every generated block
    python docs/gen_methods.py --write    # replace the generated blocks in docs/methods.md
    python docs/gen_methods.py --check    # exit 1 if docs/methods.md is out of date (a test runs this)

A block sits between `<!-- BEGIN GENERATED: NAME -->` and `<!-- END GENERATED: NAME -->`. The
blocks are:

- `losses`: one row per registered loss (`kdlang.losses.names()`);
- `card NAME`: paper, formula, inputs and hyperparameter defaults of loss NAME, from
  `kdlang.losses.info(NAME)`;
- `numbers METHOD`: published CIFAR-100 top-1 for METHOD, from the tables of
  `recipes/cifar100/generate.py` (the same numbers the generated recipes quote in their headers)
  plus the seed README's own baseline rows below.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS_MD = ROOT / "docs" / "methods.md"
GENERATOR = ROOT / "recipes" / "cifar100" / "generate.py"

BEGIN = "<!-- BEGIN GENERATED: {name} -->"
END = "<!-- END GENERATED: {name} -->"
_BLOCK = re.compile(r"<!-- BEGIN GENERATED: (?P<name>[^>]+?) -->\n(?P<body>.*?)<!-- END GENERATED: (?P=name) -->",
                    re.S)

# Section of docs/methods.md that documents each registered loss (its Markdown anchor).
SECTION = {
    "ce": "ce", "kd": "kd", "dkd": "dkd", "fitnet": "fitnet", "at": "at", "sp": "sp", "cc": "cc",
    "vid": "vid", "rkd": "rkd", "pkt": "pkt", "nst": "nst", "crd": "crd", "ab": "ab", "ft": "ft",
    "fsp": "fsp", "kl": "code-kl", "mse": "mse-and-l1", "l1": "mse-and-l1",
}
METHOD = {  # the method's usual name, for the overview
    "ce": "cross-entropy", "kd": "KD", "dkd": "DKD", "fitnet": "FitNet", "at": "AT", "sp": "SP",
    "cc": "CC", "vid": "VID", "rkd": "RKD", "pkt": "PKT", "nst": "NST", "crd": "CRD", "ab": "AB",
    "ft": "FT", "fsp": "FSP", "kl": "code KL (MAG, MAS)", "mse": "MSE", "l1": "L1",
}

# Column labels for the seven pairs of generate.PAIRS.
SHORT = {"wrn_40_2": "W40-2", "wrn_16_2": "W16-2", "wrn_40_1": "W40-1", "resnet56": "r56", "resnet110": "r110",
         "resnet20": "r20", "resnet32": "r32", "resnet32x4": "r32x4", "resnet8x4": "r8x4", "vgg13": "vgg13",
         "vgg8": "vgg8"}

# The seed README's own baseline rows (shared/method.md §5; best epoch, one run). They differ from
# RepDistiller's published baselines because the seed re-ran them; MAG/MAS gains are quoted
# against these rows there.
SEED_BASE = {
    "kd": "73.59 73.58 71.05 70.90 73.34 73.27 73.18",
    "fitnet": "73.82 72.32 69.33 68.96 71.07 73.62 71.14",
    "at": "74.39 72.82 70.39 70.36 72.60 73.53 71.41",
    "sp": "74.01 73.00 70.28 70.29 72.74 73.28 72.94",
    "vid": "74.19 73.23 70.53 70.68 72.67 73.24 71.41",
    "rkd": "73.37 72.10 69.67 69.44 72.24 72.03 71.35",
    "crd": "75.52 74.24 71.38 71.34 73.55 75.32 73.90",
}

REPD_SOURCE = "RepDistiller README (last epoch, one run)"
SEED_SOURCE = "seed README (best epoch, one run)"
DKD_SOURCE = "mdistiller README (best epoch, mean of 5 runs)"


def generator():
    """recipes/cifar100/generate.py as a module (its tables hold the published numbers)."""
    spec = importlib.util.spec_from_file_location("cifar100_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- formatting ------------------------------------------------------------------------------


def value(v) -> str:
    """A default as a recipe spells it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float):
        return repr(v)
    return str(v)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


NEEDS = {"labels": "label", "index": "index"}  # LossInfo.needs -> the name a recipe writes


def needs_text(needs) -> str:
    return ", ".join(f"`{NEEDS.get(n, n)}`" for n in needs)


def hyper_text(hyper: dict) -> str:
    return ", ".join(f"`{k}={value(v)}`" for k, v in hyper.items()) or "none"


# ---- blocks ----------------------------------------------------------------------------------


def losses_block() -> str:
    from kdlang import losses

    rows = []
    for name in losses.names():
        info = losses.info(name)
        inputs = info.inputs + (" (list per layer allowed)" if info.multi else "")
        rows.append([f"[`{name}`](#{SECTION.get(name, name)})", METHOD.get(name, name), inputs,
                     "yes" if info.trainable else "no", needs_text(info.needs) or "-", hyper_text(info.hyper)])
    return table(["loss", "method", "inputs", "trainable parts", "reads", "hyperparameters (defaults)"], rows)


def card_block(name: str) -> str:
    from kdlang import losses

    info = losses.info(name)
    file = "code_kl" if name == "kl" else name
    lines = [
        f"Loss `{name}` ([`kdlang/library/losses/{file}.py`](../kdlang/library/losses/{file}.py)): {info.summary}.",
        "",
        f"- Paper: {info.paper}.",
        f"- Inputs: {info.inputs}" + ("; a list of layers is accepted" if info.multi else "")
        + f"; {info.shape_rule}.",
        "- Trainable parts: " + ("yes, sized from the input shapes and trained with the stage" if info.trainable
                                 else "none") + ".",
        "- Reads from the batch: " + (needs_text(info.needs) or "nothing") + ".",
        "",
        "```text",
        info.formula,
        "```",
        "",
    ]
    if info.hyper:
        lines.append(table(["hyperparameter", "default"], [[f"`{k}`", f"`{value(v)}`"] for k, v in info.hyper.items()]))
    else:
        lines.append("No hyperparameters.\n")
    return "\n".join(lines)


def _pairs(gen) -> list[str]:
    return [f"{SHORT.get(t, t)}→{SHORT.get(s, s)}" for t, s, _ in gen.PAIRS]


def _row(label: str, numbers: str) -> list[str]:
    return [label] + [("n/p" if v in ("N/A", "-") else v) for v in numbers.split()]


def numbers_block(method: str) -> str:
    gen = generator()
    header = ["CIFAR-100 top-1 (%)"] + _pairs(gen)
    if method == "ce":
        rows = [_row("teacher, RepDistiller README", " ".join(p[2].split("/")[0] for p in gen.PAIRS)),
                _row("student alone, RepDistiller README", " ".join(p[2].split("/")[1] for p in gen.PAIRS))]
        return table(header, rows)
    label = gen.DISPLAY[method]
    rows = []
    if method in gen.REPD:
        rows.append(_row(f"{label}, {REPD_SOURCE}", gen.REPD[method]))
    if method == "dkd":
        rows.append(_row(f"KD, {REPD_SOURCE}", gen.REPD["kd"]))
        rows.append(_row(f"DKD, {DKD_SOURCE}", gen.DKD))
    if method in SEED_BASE:
        rows.append(_row(f"{label}, {SEED_SOURCE}", SEED_BASE[method]))
    if method in gen.SEED:
        mag, mas = gen.SEED[method]
        rows.append(_row(f"MAG+{label}, {SEED_SOURCE}", mag))
        rows.append(_row(f"MAS+{label}, {SEED_SOURCE}", mas))
    text = table(header, rows)
    if method not in gen.SEED:
        text += f"\nNo published MAG+{label} or MAS+{label} numbers.\n"
    return text


def blocks() -> dict[str, str]:
    """Every generated block, by name, in a stable order."""
    from kdlang import losses

    out = {"losses": losses_block()}
    for name in losses.names():
        out[f"card {name}"] = card_block(name)
    out["numbers ce"] = numbers_block("ce")
    for method in generator().METHODS:
        out[f"numbers {method}"] = numbers_block(method)
    return out


# ---- pasting ---------------------------------------------------------------------------------


def pasted(text: str) -> dict[str, str]:
    """The generated blocks found in a methods.md text, by name."""
    return {m.group("name"): m.group("body") for m in _BLOCK.finditer(text)}


def paste(text: str, generated: dict[str, str]) -> str:
    def replace(m):
        name = m.group("name")
        body = generated.get(name, m.group("body"))
        return f"{BEGIN.format(name=name)}\n{body}{END.format(name=name)}"

    return _BLOCK.sub(replace, text)


def problems(text: str) -> list[str]:
    """How the generated blocks in `text` differ from what this script generates."""
    generated, found = blocks(), pasted(text)
    out = [f"missing block: {name}" for name in generated if name not in found]
    out += [f"unknown block: {name}" for name in found if name not in generated]
    out += [f"stale block: {name}" for name in generated if name in found and found[name] != generated[name]]
    return out


def main(argv) -> int:
    if "--check" in argv:
        found = problems(METHODS_MD.read_text(encoding="utf-8"))
        if found:
            print("docs/methods.md is out of date (run `python docs/gen_methods.py --write`):", *found, sep="\n  ")
            return 1
        return 0
    if "--write" in argv:
        text = METHODS_MD.read_text(encoding="utf-8")
        new = paste(text, blocks())
        if new != text:
            METHODS_MD.write_text(new, encoding="utf-8")
        missing = [p for p in problems(new) if not p.startswith("stale")]
        if missing:
            print("blocks without markers in docs/methods.md:", *missing, sep="\n  ")
            return 1
        return 0
    for name, body in blocks().items():
        print(f"{BEGIN.format(name=name)}\n{body}{END.format(name=name)}\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
