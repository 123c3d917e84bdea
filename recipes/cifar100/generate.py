"""Write the CIFAR-100 recipe library from a few tables: the seed paper's seven teacher->student
pairs, each framework as a loss fragment, and MAG/MAS as fragments that add to any of them.

    python recipes/cifar100/generate.py          # rewrite the generated files
    python recipes/cifar100/generate.py --check  # exit 1 if any file is out of date (a test runs this)

Per pair directory: `X.kd` (the framework as published, RepDistiller weights), `kd_X.kd` (X plus an
explicit logit-KD term: the control that +MG must beat, since the seed's scripts switch KD on when
they add MG), `mag_X.kd` and `mas_X.kd`. Targets quoted in each header come from
shared/method.md §5 and shared/anchors.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Stage taps: RepDistiller's feat[1:-1] (three stages for ResNets/WRNs, four for VGG), its feat[0]
# (FSP's first map), feat[-2] (the last conv map: SP, FT) and the hint layer feat[2] (FitNet).
STAGES = {
    "resnet": ("layer1", "layer2", "layer3"),
    "wrn": ("layer1", "layer2", "layer3"),
    "vgg": ("layer2", "layer3", "layer4", "layer5"),
}
FIRST = {"resnet": "stem", "wrn": "stem", "vgg": "layer1"}
FAMILY = {"resnet20": "resnet", "resnet32": "resnet", "resnet56": "resnet", "resnet110": "resnet",
          "resnet8x4": "resnet", "resnet32x4": "resnet", "wrn_16_2": "wrn", "wrn_40_2": "wrn",
          "wrn_40_1": "wrn", "vgg8": "vgg", "vgg13": "vgg"}
DEPTH = {"resnet20": 20, "resnet32": 32, "resnet56": 56, "resnet110": 110, "resnet8x4": 8, "resnet32x4": 32}


def preact_taps(arch: str) -> list[str]:
    """AB's pre-ReLU stage outputs (RepDistiller's `preact=True` features), one per stage."""
    family = FAMILY[arch]
    if family == "resnet":  # the residual sum of each stage's last block, before its ReLU
        last = (DEPTH[arch] - 2) // 6 - 1
        return [f"{stage}.{last}.preact" for stage in STAGES[family]]
    if family == "wrn":  # pre-activation blocks: the next block's first BN, then the head's BN
        return ["layer2.0.bn1", "layer3.0.bn1", "head.0"]
    bn = 1 if arch == "vgg8" else 4  # each VGG stage's last BatchNorm (vgg8: one conv a stage, vgg13: two)
    return [f"{stage}.{bn}" for stage in STAGES[family]]


# teacher, student, and the published numbers (teacher/student, RepDistiller; method rows below)
PAIRS = [
    ("wrn_40_2", "wrn_16_2", "75.61/73.26"),
    ("wrn_40_2", "wrn_40_1", "75.61/71.98"),
    ("resnet56", "resnet20", "72.34/69.06"),
    ("resnet110", "resnet20", "74.31/69.06"),
    ("resnet110", "resnet32", "74.31/71.14"),
    ("resnet32x4", "resnet8x4", "79.42/72.50"),
    ("vgg13", "vgg8", "74.64/70.36"),
]
PAIR_INDEX = {pair[:2]: i for i, pair in enumerate(PAIRS)}

# Published CIFAR-100 top-1, in PAIRS order. RepDistiller README (last epoch, one run) for the
# baselines; the seed README (best epoch, one run) for MAG/MAS; mdistiller README for DKD.
REPD = {
    "kd": "74.92 73.54 70.66 70.67 73.08 73.33 72.98", "fitnet": "73.58 72.24 69.21 68.99 71.06 73.50 71.02",
    "at": "74.08 72.77 70.55 70.22 72.31 73.44 71.43", "sp": "73.83 72.43 69.67 70.04 72.69 72.94 72.68",
    "cc": "73.56 72.21 69.63 69.48 71.48 72.97 70.71", "vid": "74.11 73.30 70.38 70.16 72.61 73.09 71.23",
    "rkd": "73.35 72.22 69.61 69.25 71.82 71.90 71.48", "pkt": "74.54 73.45 70.34 70.25 72.61 73.64 72.88",
    "ab": "72.50 72.38 69.47 69.53 70.98 73.17 70.94", "ft": "73.25 71.59 69.84 70.22 72.37 72.86 70.58",
    "fsp": "72.91 N/A 69.95 70.11 71.89 72.62 70.23", "nst": "73.68 72.24 69.60 69.53 71.96 73.30 71.53",
    "crd": "75.48 74.14 71.16 71.46 73.48 75.51 73.94",
}
DKD = "76.23 74.81 71.97 - 74.11 76.32 74.68"  # mdistiller README (best epoch, mean of 5 runs)
DKD_BETA = [6, 6, 2, 2, 2, 8, 6]  # mdistiller's per-pair configs (its README has no r110->r20 run)
SEED = {  # MAG / MAS rows of the seed README
    "kd": ("75.09 74.10 71.43 71.53 73.55 73.82 73.63", "75.35 74.42 71.08 71.03 73.54 74.20 74.18"),
    "fitnet": ("75.30 73.99 70.29 70.31 72.73 74.88 73.06", "75.17 74.43 71.08 70.69 73.18 75.76 73.59"),
    "at": ("75.28 73.81 70.99 70.57 73.56 74.56 72.11", "75.98 74.90 71.78 71.34 73.29 74.92 73.38"),
    "sp": ("74.30 73.71 71.13 70.79 73.44 73.58 73.20", "75.37 73.79 70.97 71.78 73.66 74.26 73.64"),
    "vid": ("74.84 73.35 71.14 70.69 73.00 74.73 72.92", "75.63 74.49 71.28 71.61 73.32 74.86 73.56"),
    "rkd": ("75.73 73.59 71.51 71.11 73.71 74.23 73.44", "75.31 74.30 71.91 71.06 73.17 74.39 73.06"),
    "crd": ("75.84 74.53 71.77 71.91 74.00 75.89 74.29", "75.87 74.80 71.52 71.52 74.06 75.41 74.06"),
}

# Each framework: its loss names (declared in fragments/methods/NAME.kd) and, for the methods
# RepDistiller trains in two phases (AB, FT, FSP), the init stage that comes first.
METHODS = {
    "kd": {"losses": ["kd"]},
    "fitnet": {"losses": ["fitnet"]},
    "at": {"losses": ["at"]},
    "sp": {"losses": ["sp"]},
    "cc": {"losses": ["cc"]},
    "vid": {"losses": ["vid"]},
    "rkd": {"losses": ["rkd"]},
    "pkt": {"losses": ["pkt"]},
    "nst": {"losses": ["nst"]},
    "crd": {"losses": ["crd"]},
    "dkd": {"losses": ["dkd"]},
    "ab": {"losses": [], "init": ("student", ["ab"])},
    "ft": {"losses": ["ft"], "init": ("para", ["para_recon"])},
    "fsp": {"losses": [], "init": ("student", ["fsp"])},
}
PER_STAGE = {"at", "vid", "nst", "fsp", "ab"}  # one term per stage: VGG has its own fragments (four stages)
DISPLAY = {"kd": "KD", "fitnet": "FitNet", "at": "AT", "sp": "SP", "cc": "CC", "vid": "VID", "rkd": "RKD",
           "pkt": "PKT", "nst": "NST", "crd": "CRD", "dkd": "DKD", "ab": "AB", "ft": "FT", "fsp": "FSP"}
SKIP = {("fsp", "wrn_40_1"): "FSP matrices need equal channel counts (wrn_40_2 has twice wrn_40_1's)"}

HEADER = "# Generated by recipes/cifar100/generate.py from its tables; edit the generator, not this file.\n"
FRAGMENT = "kdlang 1 fragment\n"  # a file for recipes to `use`, checkable on its own
DISTILL = """stage distill(epochs=240) {{
  train {train}
  optimizer sgd(lr=0.05, momentum=0.9, weight_decay=5e-4)
  lr multistep([150, 180, 210], gamma=0.1)
  losses {losses}
}}
"""
INIT = """stage init(epochs=30) {{  # RepDistiller's init phase for {method}
  train {train}
  optimizer sgd(lr={lr}, momentum=0.9, weight_decay=5e-4)
  losses {losses}
}}

"""
REPORT = "report top1 on test, select best on val\n"


def published(table: str, pair: int) -> str:
    value = table.split()[pair]
    return value if value not in ("N/A", "-") else "not published"


def pair_fragment(teacher: str, student: str) -> str:
    t_family, s_family = FAMILY[teacher], FAMILY[student]
    t_stages, s_stages = STAGES[t_family], STAGES[s_family]
    lines = [HEADER, f"# {teacher} -> {student}: the teacher (from its own recipe's run) and the student, tapped.",
             FRAGMENT.rstrip(), f'model teacher = zoo.{teacher}() from "runs/cifar100/teachers/{teacher}/student.pt" frozen',
             f"model student = zoo.{student}()", "",
             "tap t_logits = teacher.output", "tap s_logits = student.output",
             "tap t_feat   = teacher.pool  # pooled penultimate feature", "tap s_feat   = student.pool",
             f"tap t_s0 = teacher.{FIRST[t_family]}  # the first feature map (FSP)", f"tap s_s0 = student.{FIRST[s_family]}"]
    for i, (t, s) in enumerate(zip(t_stages, s_stages), start=1):
        lines += [f"tap t_s{i} = teacher.{t}", f"tap s_s{i} = student.{s}"]
    lines += [f"tap t_hint = teacher.{t_stages[1]}  # FitNet's hint layer", f"tap s_hint = student.{s_stages[1]}",
              f"tap t_last = teacher.{t_stages[-1]}  # the last feature map (SP, FT)", f"tap s_last = student.{s_stages[-1]}"]
    for i, (t, s) in enumerate(zip(preact_taps(teacher), preact_taps(student)), start=1):
        lines += [f"tap t_pre{i} = teacher.{t}" + ("  # before the ReLU (AB)" if i == 1 else ""), f"tap s_pre{i} = student.{s}"]
    return "\n".join(lines) + "\n"


def mg_fragment(teacher: str) -> str:
    return (HEADER + f"# {teacher}'s multi-granularity branches, trained by branches/{teacher}.kd.\n" + FRAGMENT +
            f'granularity mg on t_feat from "runs/cifar100/branches/{teacher}/components/mg.pt" {{\n'
            "  level fine   code=64  T=2\n  level coarse code=256 T=8\n}\n")


def plain_recipe(arch: str, role: str, published_top1: str) -> str:
    """Cross-entropy training of one architecture: a teacher, or a student's no-KD baseline."""
    what = "the teacher" if role == "teacher" else "the student alone (the no-distillation baseline)"
    return (HEADER + f"# Train {arch} as {what}, with cross-entropy and RepDistiller's schedule.\n"
            f"# Target: {published_top1} (RepDistiller README).\n"
            f"# Run: kdlang compile recipes/cifar100/{role}s/{arch}.kd --run --out runs/cifar100/{role}s/{arch}\n"
            "# Policy: top-1 on test, weights of the best val epoch (val carved from train).\n"
            f'kdlang 1\nrecipe "{arch} {role} on CIFAR-100"\n\nuse "../common.kd"\n\n'
            f"model {role} = zoo.{arch}()\ntap logits = {role}.output\n\n"
            f"stage train(epochs=240) {{\n  train {role}\n  optimizer sgd(lr=0.05, momentum=0.9, weight_decay=5e-4)\n"
            "  lr multistep([150, 180, 210], gamma=0.1)\n  loss ce = ce(logits, label)\n}\n\n" + REPORT)


def branch_recipe(teacher: str) -> str:
    return (HEADER + f"# The seed's branch stage (method.md 2): granularity branches on the frozen {teacher}.\n"
            "# All levels train jointly in one pass (the reference trains each level in its own pass with\n"
            "# its own optimizer; equivalent up to data order).\n"
            f"# Run: kdlang compile recipes/cifar100/branches/{teacher}.kd --run --out runs/cifar100/branches/{teacher}\n"
            f'kdlang 1\nrecipe "{teacher}: multi-granularity branches on CIFAR-100"\n\nuse "../common.kd"\n\n'
            f'model teacher = zoo.{teacher}() from "runs/cifar100/teachers/{teacher}/student.pt" frozen\n'
            "tap t_feat   = teacher.pool\ntap t_logits = teacher.output\n\n"
            "granularity mg on t_feat {\n  level fine   code=64  T=2\n  level coarse code=256 T=8\n}\n\n"
            "stage analyze(epochs=60) {\n  train mg\n  optimizer sgd(lr=0.01, momentum=0.9, weight_decay=5e-4)\n"
            "  lr multistep([30, 45], gamma=0.1)\n"
            "  loss levels = sum(for l in mg.levels: kd(l.logits, t_logits, T=l.T) + ce(l.logits, label))\n}\n\n"
            + REPORT)


def student_recipe(teacher: str, student: str, method: str, variant: str) -> str:
    index = PAIR_INDEX[(teacher, student)]
    spec = METHODS[method]
    label = DISPLAY[method]
    name = {"base": label, "kd": f"{label}+KD", "mag": f"MAG+{label}", "mas": f"MAS+{label}"}[variant]
    if method == "kd" and variant == "kd":
        raise ValueError("KD+KD is KD")
    prefix = "" if variant == "base" else f"{variant}_"
    folder = "methods/vgg" if FAMILY[student] == "vgg" and method in PER_STAGE else "methods"
    uses = ["../common.kd", f"../fragments/pair_{teacher}-{student}.kd", f"../fragments/{folder}/{method}.kd"]
    losses = ["ce"]
    train = ["student"]
    if method == "kd" and variant in ("mag", "mas"):
        losses = ["ce_mg_kd", "div_mg_kd"]  # the seed's KD weights: 0.2 CE + 0.8 KD
    elif method == "kd":
        losses = ["ce_kd", "kd"]  # RepDistiller: 0.1 CE + 0.9 KD
    else:
        losses += spec["losses"]
        if variant in ("kd", "mag", "mas"):
            losses.append("div")
    if variant == "kd":
        uses.append("../fragments/logit_kd.kd")
    if variant in ("mag", "mas"):
        uses += [f"../fragments/mg_{teacher}.kd", f"../fragments/{variant}.kd"]
        losses.append("codes")
        train.append("smg")
    targets = [f"{label} {published(REPD[method], index) if method in REPD else published(DKD, index)}"
               f" ({'RepDistiller README, last epoch' if method in REPD else 'mdistiller README, best epoch, 5 runs'})"]
    if variant in ("mag", "mas") and method in SEED:
        row = SEED[method][0 if variant == "mag" else 1]
        targets.append(f"{name} {published(row, index)} (seed README, best epoch, one run)")
    elif variant in ("mag", "mas"):
        targets.append(f"{name}: no published number (the seed paper reports MG for KD, FitNet, AT, SP, VID, RKD, CRD)")
    lines = [HEADER.rstrip(), f"# {name}: {teacher} -> {student} on CIFAR-100 (teacher/student {PAIRS[index][2]}).",
             "# Targets: " + "; ".join(targets) + ".",
             "# Policy: top-1 on test, weights of the best val epoch (val carved from train, not the test set).",
             f"# Needs: runs/cifar100/teachers/{teacher}/student.pt"
             + (f", runs/cifar100/branches/{teacher}/components/mg.pt" if variant in ("mag", "mas") else "") + ".",
             f"# Run: kdlang compile recipes/cifar100/{teacher}-{student}/{prefix}{method}.kd --run "
             f"--out runs/cifar100/{teacher}-{student}/{prefix}{method}",
             "kdlang 1", f'recipe "{name}: {teacher} -> {student} on CIFAR-100"', ""]
    lines += [f'use "{u}"' for u in uses]
    lines.append("")
    text = "\n".join(lines) + "\n"
    if "init" in spec:
        what, init_losses = spec["init"]
        # RepDistiller trains FT's paraphraser at 0.01 for ResNet/WRN students, else at the student's lr
        lr = 0.01 if method == "ft" and FAMILY[student] != "vgg" else 0.05
        text += INIT.format(method=label, train=what, losses=", ".join(init_losses), lr=lr)
    if method == "dkd":  # beta is per pair in mdistiller: the recipe declares its own dkd term
        beta = DKD_BETA[index]
        losses = ["dkd_pair" if name == "dkd" else name for name in losses]
        text = text.replace('use "../fragments/methods/dkd.kd"\n', 'use "../fragments/methods/dkd.kd"\n'
                            f"# DKD beta={beta} for this pair (mdistiller's config); the fragment's default is 8.\n")
    text += DISTILL.format(train=", ".join(train), losses=", ".join(losses)) + "\n"
    if method == "dkd":
        text += f"loss dkd_pair = warmup(epochs=20, per=\"epoch\") * dkd(s_logits, t_logits, alpha=1, beta={beta}, T=4)\n\n"
    return text + REPORT


# The students the side experiments compare: (model name, label, run that trained it).
SIDE_STUDENTS = [
    ("alone", "the student alone", "runs/cifar100/students/{student}"),
    ("kd", "KD", "runs/cifar100/{teacher}-{student}/kd"),
    ("mag", "MAG+KD", "runs/cifar100/{teacher}-{student}/mag_kd"),
    ("mas", "MAS+KD", "runs/cifar100/{teacher}-{student}/mas_kd"),
]
NOISE = "[0, 0.02, 0.05, 0.1, 0.2]"
# Linear-probe targets: (data declaration, probe suffix, classes, lr). The reference's protocol
# (method.md 5, CRD's transferability test): 50 epochs, SGD momentum 0.9, wd 5e-4, lr x0.1 at 20
# and 25; STL-10 batch 64 lr 0.02, Tiny ImageNet batch 128 lr 0.04; images resized to 32x32.
PROBES = [("stl10(batch=64)", "stl", "stl10", 10, 0.02), ("tiny = tiny_imagenet(batch=128)", "tiny", "tiny_imagenet", 200, 0.04)]


def side_header(teacher: str, student: str, what: str, name: str) -> list[str]:
    runs = ", ".join(f"{run.format(teacher=teacher, student=student)}/student.pt" for _, _, run in SIDE_STUDENTS)
    return [HEADER.rstrip(), *what.splitlines(),
            f"# Needs: {runs}.",
            f"# Run: kdlang compile recipes/cifar100/{teacher}-{student}/{name}.kd --run "
            f"--out runs/cifar100/{teacher}-{student}/{name}"]


def frozen_students(teacher: str, student: str) -> list[str]:
    return [f'model {name:<5} = zoo.{student}(classes=100) from '
            f'"{run.format(teacher=teacher, student=student)}/student.pt" frozen  # {label}'
            for name, label, run in SIDE_STUDENTS]


def transfer_recipe(teacher: str, student: str) -> str:
    """Linear probes on the frozen, distilled students' pooled features, on other data sets."""
    what = (f"# Linear-probe transfer (method.md, side experiments): the {student} students distilled from\n"
            f"# {teacher} on CIFAR-100, frozen, each get a new linear classifier on their pooled feature,\n"
            "# trained on STL-10 and on Tiny ImageNet (both resized to 32x32) with the reference's schedule.\n"
            "# The probes of one data set train side by side in one stage: each reads only its own frozen\n"
            "# student, so this equals one run per probe with the same data order. No augmentation (the\n"
            "# reference resizes and normalises only), so the frozen features are cached after epoch 1.\n"
            "# Policy: top-1 on test at the last epoch (one val score cannot pick an epoch for four probes).")
    lines = side_header(teacher, student, what, "transfer")
    lines += ["kdlang 1", f'recipe "Transfer: linear probes on {student} students ({teacher} teacher), STL-10 and Tiny ImageNet"',
              ""]
    lines += [f"data {decl}" for decl, *_ in PROBES] + [""]
    lines += frozen_students(teacher, student) + [""]
    for name, _, _ in SIDE_STUDENTS:
        lines.append(f"tap {name}_feat = {name}.pool")
        lines += [f"branch {name}_{suffix} on {name}_feat = linear(out={classes})" for _, suffix, _, classes, _ in PROBES]
    for i, (decl, suffix, stage, _, lr) in enumerate(PROBES):
        data = "" if i == 0 else f", data={decl.split(' = ')[0]}"
        probes = [f"{name}_{suffix}" for name, _, _ in SIDE_STUDENTS]
        lines += ["", f"stage {stage}(epochs=50{data}) {{", f"  train {', '.join(probes)}",
                  f"  optimizer sgd(lr={lr}, momentum=0.9, weight_decay=5e-4)", "  lr multistep([20, 25], gamma=0.1)"]
        lines += [f"  loss {probe}_ce = ce({probe}, label)" for probe in probes]
        lines.append("}")
    return "\n".join(lines) + "\n\nreport top1 on test, select last on test\n"


def robustness_recipe(teacher: str, student: str) -> str:
    """The teacher and the students, frozen, evaluated on CIFAR-100 test images under Gaussian noise."""
    what = (f"# Noise robustness (method.md, side experiments): test top-1 of {teacher} and the {student}\n"
            "# students under additive Gaussian input noise (std in pixel units of [0, 1] images, added\n"
            "# before normalisation). The seed paper's own noisy-input protocol is not public\n"
            "# (method.md 5): this is the plain additive version. Nothing trains: one evaluation.")
    lines = side_header(teacher, student, what, "robustness")
    lines += ["kdlang 1", f'recipe "Robustness: {teacher} and its {student} students under Gaussian noise"', "",
              'use "../common.kd"', "",
              f'model teacher = zoo.{teacher}() from "runs/cifar100/teachers/{teacher}/student.pt" frozen']
    lines += frozen_students(teacher, student)
    names = ", ".join(["teacher"] + [name for name, _, _ in SIDE_STUDENTS])
    lines += ["", "stage robustness {", f"  evaluate {names}", "}", "", f"report top1 on test, noise {NOISE}"]
    return "\n".join(lines) + "\n"


def files() -> dict[Path, str]:
    out = {}
    for teacher, _, numbers in sorted({(t, s, n) for t, s, n in PAIRS}):
        out[HERE / "teachers" / f"{teacher}.kd"] = plain_recipe(teacher, "teacher", numbers.split("/")[0])
        out[HERE / "branches" / f"{teacher}.kd"] = branch_recipe(teacher)
        out[HERE / "fragments" / f"mg_{teacher}.kd"] = mg_fragment(teacher)
    for _, student, numbers in sorted({(t, s, n) for t, s, n in PAIRS}):
        out[HERE / "students" / f"{student}.kd"] = plain_recipe(student, "student", numbers.split("/")[1])
    for teacher, student, _ in PAIRS:
        out[HERE / "fragments" / f"pair_{teacher}-{student}.kd"] = pair_fragment(teacher, student)
        out[HERE / f"{teacher}-{student}" / "transfer.kd"] = transfer_recipe(teacher, student)
        out[HERE / f"{teacher}-{student}" / "robustness.kd"] = robustness_recipe(teacher, student)
        for method in METHODS:
            if (method, student) in SKIP:
                continue
            for variant in ("base", "kd", "mag", "mas"):
                if method == "kd" and variant == "kd":
                    continue
                prefix = "" if variant == "base" else f"{variant}_"
                out[HERE / f"{teacher}-{student}" / f"{prefix}{method}.kd"] = student_recipe(teacher, student, method, variant)
    return out


def main(argv) -> int:
    stale = []
    for path, text in files().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print("out of date (run recipes/cifar100/generate.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
