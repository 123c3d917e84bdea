"""kdlang: declarative knowledge-distillation recipes, checked before they train.

    import kdlang
    recipe = kdlang.load("recipes/quickstart.kd")      # parse, check, build
    module = recipe.compile("distill")                  # torch.nn.Module for one stage
    logits, losses = module((images, labels, index))    # {loss_name: weighted_loss}

`kdlang.models`, `kdlang.losses` and `kdlang.datasets` are the libraries recipes name.
"""

from kdlang.version import __version__

__all__ = ["load", "check", "__version__"]


def load(path, *, overrides=(), allow_missing_checkpoints=False, seed=None):
    """Load, check and build a recipe (weights initialised from `seed`, else the recipe's
    `runtime(seed=...)`, else 0); raises `kdlang.diagnostics.RecipeError` if it has errors."""
    from kdlang.api import load as _load

    return _load(path, overrides=overrides, allow_missing_checkpoints=allow_missing_checkpoints, seed=seed)


def check(path):
    """Check a recipe without building it; returns a `Checked` with `.diagnostics`."""
    from kdlang.check import check_path

    return check_path(path)


def __getattr__(name):
    if name in ("models", "losses", "datasets"):
        import importlib

        return importlib.import_module(f"kdlang.{name}")
    raise AttributeError(f"module 'kdlang' has no attribute {name!r}")
