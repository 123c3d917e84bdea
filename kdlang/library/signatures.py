"""How recipe-visible functions are called, so the checker can validate calls without running them."""

from __future__ import annotations

import difflib
import math

import attrs

from kdlang.library.optimizers import LR_SCHEDULES, OPTIMIZERS  # noqa: F401  (read by the checker and docs)
from kdlang.library.spec import Signature

# Spellings users reach for that are too far from the library's name for difflib to find.
SYNONYMS = {
    "temp": "T", "temperature": "T", "tau": "T",
    "num_classes": "classes", "n_classes": "classes",
    "batch_size": "batch", "batchsize": "batch", "bs": "batch",
    "wd": "weight_decay", "learning_rate": "lr",
}


def suggest(word: str, choices) -> str | None:
    """The 'did you mean' for a misspelt name: a known synonym, a close spelling (ignoring case), or None."""
    choices = list(choices)
    synonym = SYNONYMS.get(word.lower())
    if synonym in choices:
        return synonym
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if found:
        return found[0]
    by_lower = {c.lower(): c for c in choices}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def did_you_mean(word: str, choices, what: str = "") -> str:
    guess = suggest(word, choices)
    if guess:
        return f"did you mean `{guess}`?"
    choices = sorted(choices)
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"{what or 'known names'}: {shown}" if choices else "nothing is accepted here"


S = Signature
R = Signature.REQUIRED

DEFAULT_BATCH = 64  # images per batch when neither the data declaration nor the stage says
# Keywords every data declaration takes for its loaders, with their defaults.
DATA_LOADER_KWARGS = {"batch": DEFAULT_BATCH, "workers": 0}

STAGE_ARGS = S("stage", (), {"epochs": R, "data": "data", "batch": None, "grad_clip": None}, "a training stage")

RUNTIME_ARGS = S(
    "runtime",
    (),
    {"device": "auto", "amp": "off", "channels_last": "auto", "seed": 0, "deterministic": False,
     "cache_teacher": "auto", "divergence": "stop", "divergence_factor": 100.0, "divergence_steps": 20,
     "skip_nonfinite": False, "export": [], "compile": False, "log_every": None,
     "log": [], "mlflow_uri": None},
    "how the run executes",
)

LEVEL_ARGS = S("level", (), {"code": R, "T": 1.0, "hidden": None}, "one granularity level")

# Excitation combinators: tensors in, one tensor out.
COMBINATORS = {
    "mean": S("mean", (), {}, "the plain mean of teacher heads (MAS stable excitation)", variadic=True),
    "mix": S("mix", ("heads",), {"weights": R, "normalize": True}, "a weighted mix of heads; weights may be schedules"),
}

# Reducers over comprehensions or several losses.
REDUCERS = {
    "sum": S("sum", (), {}, "the sum of losses", variadic=True),
    "mean": S("mean", (), {}, "the mean of losses", variadic=True),
}

# The kind of value each schedule keyword takes (see `kdlang.library.schedules.FUNCTIONS`).
SCHEDULE_KEYWORD_KINDS = {
    "linear": {"epochs": "range"},
    "cosine": {"epochs": "range"},
    "step": {"at": "list", "gamma": "number"},
    "exponential": {"gamma": "number", "every": "number"},
    "warmup": {"epochs": "number", "start": "number", "per": "string"},
}

# Example values for required keywords, shown by "needs `key=`" diagnostics; (function, key) first.
KEYWORD_EXAMPLES = {
    ("linear", "epochs"): "0..10", ("cosine", "epochs"): "0..10", ("warmup", "epochs"): "5",
    "epochs": "10", "lr": "0.1", "code": "64", "hidden": "256", "at": "[30, 60]", "gamma": "0.1",
    "weights": "[1, 1]", ("images", "root"): '"my_images"',
}

METRICS = ("top1", "top5", "loss")
SPLITS = ("train", "val", "test")
SELECT_POLICIES = ("best", "last")
AMP_MODES = ("off", "bf16", "fp16")
EXPORT_FORMATS = ("onnx", "torchscript")  # runtime(export=[...]); kdlang.runtime.export writes them
LOGGERS = ("tensorboard", "mlflow")  # runtime(log=[...]); kdlang.runtime.tracking has one class for each


# ---- the values each keyword accepts --------------------------------------------------------------
# One table for every call a recipe makes, checked by one generic pass (`Resolver._check_values`),
# so the checker accepts only values the runtime can run. The bounds stop absurd sizes (a 10^18-class
# head, a 10^10-pixel image) before anything is allocated.

MAX_CLASSES = 100_000
MAX_WIDTH = 16_384  # code, hidden and adapter widths: a 16384x16384 layer is already 1 GiB
MAX_SAMPLE_ELEMENTS = 1 << 24  # numbers in one input sample (C*H*W): 3x2048x2048 fits
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_SEED = (1 << 32) - 1


@attrs.frozen
class Value:
    """The values one keyword accepts: a kind with bounds, plus `none`, a schedule or named strings.

    `kind` is "int", "number", "bool", "string" or "list" (each item then follows `item`); bounds are
    inclusive unless `open_low`/`open_high`; numbers are finite. `schedule`: a value that may vary
    over the epochs, whose range the schedules pass judges per stage.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    none: bool = False
    schedule: bool = False
    choices: tuple = ()
    item: "Value | None" = None
    length: tuple | None = None  # (fewest, most) list items
    unit: str = ""  # what the number counts, for the hint

    def accepts(self, v) -> bool:
        if v is None:
            return self.none
        if isinstance(v, str):
            return v in self.choices or (self.kind == "string" and not self.choices)
        if isinstance(v, bool):
            return self.kind == "bool"
        if isinstance(v, (int, float)):
            return self.kind in ("int", "number") and self._in_range(v)
        if isinstance(v, (list, tuple)):
            return self.kind == "list" and self._fits(v)
        return False

    def _in_range(self, v) -> bool:
        if self.kind == "int" and not isinstance(v, int):
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (self.open_low and v == self.low)):
            return False
        return self.high is None or not (v > self.high or (self.open_high and v == self.high))

    def _fits(self, items) -> bool:
        fewest, most = self.length or (0, math.inf)
        return fewest <= len(items) <= most and all(self.item is None or self.item.accepts(i) for i in items)

    def near_miss(self, v) -> str | None:
        """'did you mean "X"?' for a string (or a list's string item) that misspells one of the choices."""
        if isinstance(v, (list, tuple)) and self.item is not None:
            return next(filter(None, map(self.item.near_miss, v)), None)
        if isinstance(v, str) and self.choices and v not in self.choices:
            guess = suggest(v, [c for c in self.choices if isinstance(c, str)])
            return f'did you mean "{guess}"?' if guess else None
        return None

    def noun(self) -> str:
        """A short name for the accepted values, as in "`batch=` must be a positive whole number"."""
        low = self.low if self.low is not None else -math.inf
        sign = "a positive " if low > 0 or (low == 0 and self.open_low) else "a non-negative " if low == 0 else "a "
        if self.kind == "list":
            return self.describe() + (" or none" if self.none else "")
        word = {"int": sign + "whole number", "number": sign + "number", "bool": "true or false",
                "string": "a string"}[self.kind]
        if self.kind == "string" and self.choices:
            word = "one of " + ", ".join(f'"{c}"' for c in self.choices)
        elif self.choices:
            word = word.replace(" or ", ", ") + " or " + ", ".join(f'"{c}"' for c in self.choices)
        return word + (" or none" if self.none else "")

    def describe(self) -> str:
        """The exact valid range, for the hint."""
        if self.kind == "list":
            count = "" if self.length is None else (
                f"{self.length[0]} " if self.length[0] == self.length[1] else f"{self.length[0]} to {self.length[1]} ")
            return f"a list of {count}items, each {self.item.describe()}" if self.item else "a list"
        if self.kind not in ("int", "number"):
            return self.noun()
        low = "" if self.low is None else ("(" if self.open_low else "[") + _n(self.low)
        high = "" if self.high is None else _n(self.high) + (")" if self.open_high else "]")
        what = "a whole number" if self.kind == "int" else "a finite number"
        if self.low is not None and self.high is not None:
            text = f"{what} from {_n(self.low)} to {_n(self.high)}" if self.kind == "int" and not (
                self.open_low or self.open_high) else f"{what} in {low}, {high}"
        elif self.low is not None:
            text = f"{what} {'>' if self.open_low else '>='} {_n(self.low)}"
        else:
            text = what
        return text + (" or none" if self.none else "") + (f" ({self.unit})" if self.unit else "")


@attrs.frozen
class Either(Value):
    """The values of its own rule or of `other`'s: images' `size=64` or `size=[64, 96]`."""

    other: Value | None = None

    def accepts(self, v) -> bool:
        return super().accepts(v) or (self.other is not None and self.other.accepts(v))

    def noun(self) -> str:
        return super().noun() + (f" or {self.other.noun()}" if self.other is not None else "")

    def describe(self) -> str:
        return super().describe() + (f", or {self.other.describe()}" if self.other is not None else "")


def _n(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


V = Value
POSITIVE = V("number", 0, open_low=True)
NON_NEGATIVE = V("number", 0)
FRACTION = V("number", 0, 1)  # a probability
BOOL = V("bool")
SEED = V("int", 0, MAX_SEED, unit="a random seed")
CLASSES = V("int", 2, MAX_CLASSES, unit="the number of classes")
WIDTH = V("int", 1, MAX_WIDTH, unit="a layer width, in units")
EPOCHS = V("number", 0, MAX_EPOCHS, unit="in epochs")

# family -> {keyword or "function.keyword": Value}; the function-specific entry wins.
VALUES = {
    "data": {
        "batch": V("int", 1, MAX_BATCH, unit="images per batch"),
        "workers": V("int", 0, 256, unit="loader processes"),
        "val": V("int", 0, unit="training images held out for validation"),
        "seed": SEED, "data_seed": attrs.evolve(SEED, none=True),
        "root": V("string", none=True), "download": BOOL, "normalize": BOOL,
        "shape": V("list", item=V("int", 1, 1 << 16), length=(3, 3), unit="C, H, W"),
        "classes": CLASSES,
        "size": V("int", 1, 1024, unit="the image side, in pixels"),
        "synthetic.size": V("int", 1, 1_000_000, unit="training images"),
        "test_size": V("int", 1, 1_000_000, none=True, unit="test images"),
        # images: your own folder of class folders (`kdlang.library.datasets.images` checks the rest)
        "images.root": V("string", unit="the folder holding train/<class>/"),
        "images.size": Either("int", 1, 1024, unit="the image side, in pixels",
                              other=V("list", item=V("int", 1, 1024), length=(2, 2), unit="H, W")),
        "images.channels": V("int", 1, 3, unit="3 for colour, 1 for grey"),
        "images.mean": V("list", item=V("number"), length=(1, 3), none=True, unit="one per channel"),
        "images.std": V("list", item=V("number", 0, open_low=True), length=(1, 3), none=True,
                        unit="one per channel"),
        "images.test": V("number", 0, open_low=True, none=True,
                         unit="test images, or a fraction of the training images below 1"),
        "images.data_seed": SEED,
    },
    "augment": {
        "pad": V("int", 0, 1024, unit="pixels"), "p": FRACTION, "std": NON_NEGATIVE,
    },
    "model": {
        "classes": CLASSES, "in_channels": V("int", 1, 1024, unit="input channels"),
        "drop_rate": V("number", 0, 1, open_high=True), "dropout": V("number", 0, 1, open_high=True),
        "dropout_aux": V("number", 0, 1, open_high=True), "stochastic_depth_prob": V("number", 0, 1, open_high=True),
        "width_mult": V("number", 0, 16, open_low=True), "expansion": V("int", 1, 64),
        "groups": V("int", 1, 64), "widths": V("list", item=WIDTH, length=(1, 8)),
        "blocks": V("list", item=V("int", 1, 64), length=(1, 8)),
    },
    "level": {"code": WIDTH, "T": POSITIVE, "hidden": attrs.evolve(WIDTH, none=True)},
    "branch": {
        "out": V("int", 1, MAX_CLASSES, none=True, unit="output units"), "hidden": WIDTH,
        "rate": V("number", 0, 16, open_low=True, unit="factor channels per input channel"), "bn": BOOL,
    },
    "stage": {
        "epochs": V("int", 1, MAX_EPOCHS), "batch": V("int", 1, MAX_BATCH, none=True, unit="images per batch"),
        "grad_clip": V("number", 0, open_low=True, none=True, unit="the largest gradient norm"),
    },
    "optimizer": {
        "lr": V("number", 0, open_low=True, unit="the learning rate"),
        "momentum": V("number", 0, 1, open_high=True), "weight_decay": NON_NEGATIVE, "nesterov": BOOL,
        "betas": V("list", item=V("number", 0, 1, open_high=True), length=(2, 2)),
        "eps": POSITIVE,
    },
    "lr": {
        "warmup": EPOCHS, "gamma": POSITIVE, "min_lr": NON_NEGATIVE,
        "max_lr": V("number", 0, open_low=True, none=True), "pct_start": V("number", 0, 1, True, True),
        "milestones": V("list", item=EPOCHS),
    },
    "runtime": {
        "device": V("string"), "amp": V("string", choices=AMP_MODES), "channels_last": V("bool", choices=("auto",)),
        "seed": SEED, "deterministic": BOOL, "cache_teacher": V("bool", choices=("auto",)),
        "divergence": V("string", choices=("stop", "warn", "off")),
        "divergence_factor": V("number", 1, open_low=True), "divergence_steps": V("int", 1, 1_000_000),
        "skip_nonfinite": BOOL,
        "export": V("list", item=V("string", choices=EXPORT_FORMATS)),
        "compile": BOOL,
        "log_every": V("int", 1, 1_000_000, none=True, unit="training steps"),
        "log": V("list", item=V("string", choices=LOGGERS)),
        "mlflow_uri": V("string", none=True, unit="an MLflow tracking URI"),
    },
    "loss": {
        "T": attrs.evolve(POSITIVE, schedule=True, unit="a temperature"),
        "label_smoothing": attrs.evolve(FRACTION, schedule=True),
        "feat_dim": WIDTH, "dim": WIDTH, "nce_k": V("int", 1, 1 << 20, unit="negatives per sample"),
        "nce_t": attrs.evolve(POSITIVE, schedule=True), "nce_m": attrs.evolve(FRACTION, schedule=True),
        "seed": SEED, "P": V("int", 1, 8), "d": V("int", 1, 8), "ft.p": V("int", 1, 8),
        "form": V("string"), "regressor": BOOL, "resize": BOOL,
    },
    "mix": {"normalize": BOOL},
}

NO_DEFAULT = Signature.REQUIRED


def value_rule(family: str, function: str, key: str, default=NO_DEFAULT) -> Value | None:
    """The rule for `key=` of `function`: from `VALUES`, else judged by the keyword's default (a
    library keyword the table does not list), else None (nothing to check statically)."""
    table = VALUES.get(family, {})
    found = table.get(f"{function}.{key}") or table.get(key)
    if found is not None or default is NO_DEFAULT:
        return found
    if isinstance(default, bool):
        return BOOL
    if isinstance(default, int):
        return V("int", 0, MAX_WIDTH)
    if isinstance(default, float):
        return V("number", schedule=family == "loss")
    return V("string") if isinstance(default, str) else None
