"""How recipe-visible functions are called, so the checker can validate calls without running them."""

from __future__ import annotations

import difflib

import attrs


class _Required:
    def __repr__(self) -> str:
        return "<required>"


@attrs.frozen
class Signature:
    """Positional parameters (a `:kind` suffix names a special form) and keywords with defaults."""

    REQUIRED = _Required()

    name: str
    positional: tuple = ()
    keywords: dict = attrs.field(factory=dict)
    doc: str = ""
    variadic: bool = False  # any number of positional arguments

    @property
    def required_keywords(self) -> list[str]:
        return [k for k, v in self.keywords.items() if v is Signature.REQUIRED]


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

OPTIMIZERS = {
    "sgd": S("sgd", (), {"lr": R, "momentum": 0.0, "weight_decay": 0.0, "nesterov": False}, "SGD"),
    "adamw": S("adamw", (), {"lr": R, "betas": [0.9, 0.999], "weight_decay": 0.01, "eps": 1e-8}, "AdamW"),
    "adam": S("adam", (), {"lr": R, "betas": [0.9, 0.999], "weight_decay": 0.0, "eps": 1e-8}, "Adam"),
}

LR_SCHEDULES = {
    "constant": S("constant", (), {"warmup": 0}, "the optimizer's lr throughout (after an optional warm-up)"),
    "multistep": S("multistep", ("milestones",), {"gamma": 0.1, "warmup": 0}, "lr times gamma at each milestone epoch"),
    "cosine": S("cosine", (), {"min_lr": 0.0, "warmup": 0}, "cosine decay to min_lr over the stage"),
    "onecycle": S("onecycle", (), {"max_lr": None, "pct_start": 0.3}, "one-cycle: up to max_lr then down (per step)"),
}

STAGE_ARGS = S("stage", (), {"epochs": R, "data": "data", "batch": None, "grad_clip": None}, "a training stage")

RUNTIME_ARGS = S(
    "runtime",
    (),
    {"device": "auto", "amp": "off", "channels_last": "auto", "seed": 0, "deterministic": False,
     "cache_teacher": "auto", "divergence": "stop", "divergence_factor": 100.0, "divergence_steps": 20,
     "skip_nonfinite": False},
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
    "weights": "[1, 1]",
}

METRICS = ("top1", "top5", "loss")
SPLITS = ("train", "val", "test")
SELECT_POLICIES = ("best", "last")
AMP_MODES = ("off", "bf16", "fp16")
