"""Train every stage of a kdlang recipe with PyTorch Lightning.

    python examples/lightning/train.py recipes/quickstart.kd
    python examples/lightning/train.py tests/recipes/tiny_mas.kd --fast-dev-run

The recipe says what each step computes (models, taps, losses, optimizer, lr schedule); Lightning
runs the loop. Stages run in the recipe's order on one `Recipe`, so a stage reads the weights the
stages before it trained (`model teacher = ... from stage teach`).
"""

from __future__ import annotations

import argparse

import lightning

import kdlang
from kdlang.integrations.lightning import StageLightningModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as kdlang compile --set")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    parser.add_argument("--fast-dev-run", action="store_true", help="one batch of training and validation a stage")
    args = parser.parse_args()

    recipe = kdlang.load(args.recipe, overrides=args.set)
    for stage in recipe.stages:
        if recipe.program.stage(stage).evaluation_only:
            continue
        module = StageLightningModule(recipe, stage)
        trainer = lightning.Trainer(max_epochs=module.epochs, accelerator=args.accelerator, devices=1,
                                    fast_dev_run=args.fast_dev_run, logger=False, enable_checkpointing=False,
                                    enable_model_summary=False)
        trainer.fit(module)
        shown = ", ".join(f"{name} {float(value):.4f}" for name, value in sorted(trainer.logged_metrics.items()))
        print(f"stage {stage}: {shown}")


if __name__ == "__main__":
    main()
