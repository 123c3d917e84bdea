"""One stage of a recipe as a PyTorch Lightning `LightningModule`.

    import lightning
    import kdlang
    from kdlang.integrations.lightning import StageLightningModule

    recipe = kdlang.load("recipes/quickstart.kd")
    for stage in recipe.stages:                       # each stage reads what the last one trained
        module = StageLightningModule(recipe, stage)
        lightning.Trainer(max_epochs=module.epochs).fit(module)

Lightning owns the loop, devices, precision, logging and checkpoints; the recipe says what a step
computes. `training_step` returns the stage's total loss (the sum of its named, weighted terms, as
`StageModule.forward` gives them) and logs each term; `configure_optimizers` builds the stage's
`optimizer` and `lr` items as `kdlang compile --run` does (per-step multiplier); validation reports
the top-1 accuracy of every head the stage evaluates. The loaders default to the recipe's own data
(`(inputs, labels, index)` batches); pass your own to `Trainer.fit` to replace them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import lightning
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch.utils.data import DataLoader

from kdlang.lower.recipe import Recipe
from kdlang.runtime.optim import build_lr_lambda, build_optimizer

if TYPE_CHECKING:
    from kdlang.runtime.data import StageData


class StageLightningModule(lightning.LightningModule):
    """The stage `stage` of `recipe` (a loaded `Recipe`, or a path that `kdlang.load` reads with
    `overrides`); the first stage when `stage` is None."""

    def __init__(self, recipe: Recipe | str | Path, stage: str | None = None, *, overrides: Sequence[str] = (),
                 seed: int | None = None):
        super().__init__()
        if not isinstance(recipe, Recipe):
            from kdlang.api import load

            recipe = load(recipe, overrides=overrides, seed=seed)
        self.recipe = recipe
        self.stage_name = stage or recipe.stages[0]
        self.planned = recipe.program.stage(self.stage_name)
        if self.planned.evaluation_only:
            raise ValueError(f"stage {self.stage_name} trains nothing (an evaluation stage); "
                             f"train one of {', '.join(self._training_stages())}")
        self.seed = recipe.seed if seed is None else seed
        self._data: StageData | None = None
        if _needs_data_size(recipe, self.stage_name):  # CRD's memory bank is sized by the training set
            recipe.num_data = self.data.num_train
        self.stage = recipe.compile(self.stage_name)

    @property
    def epochs(self) -> int:
        """The stage's `epochs=`: what `Trainer(max_epochs=...)` should be for the recipe's schedules."""
        return self.planned.epoch_count

    @property
    def data(self) -> StageData:
        """The recipe's loaders for this stage (built on first use)."""
        if self._data is None:
            from kdlang.runtime.data import stage_data

            self._data = stage_data(self.recipe, self.stage_name, seed=self.seed)
        return self._data

    def _training_stages(self) -> list[str]:
        return [s.name for s in self.recipe.program.stages if not s.evaluation_only]

    # ---- the step ---------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor) -> dict:
        """Logits of every head the stage evaluates, by head name."""
        return self.stage.predict(inputs)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        steps = self.trainer.num_training_batches
        # the stage's fractional epoch, which its schedules read (as the kdlang trainer sets it)
        self.stage.time = self.current_epoch + batch_idx / steps if steps and steps != float("inf") else 0.0
        _, losses = self.stage(batch)
        total = torch.stack([value.float() for value in losses.values()]).sum()
        size = len(batch[0])
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), batch_size=size)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=size)
        return total

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        inputs, labels = batch[0], batch[1]
        for head, logits in self.stage.predict(inputs).items():
            correct = (logits.argmax(dim=1) == labels).float().mean()
            self.log(f"val/{head}/top1", 100 * correct, prog_bar=True, batch_size=len(labels))

    def on_train_epoch_start(self) -> None:
        if self._data is not None:  # the recipe's sampler reshuffles per epoch
            self._data.set_epoch(self.current_epoch)

    # ---- what the recipe declares -----------------------------------------------------------
    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimizer = build_optimizer(self.planned, self.stage.trainable_parameters())
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else self.epochs
        steps = max(1, int(self.trainer.estimated_stepping_batches) // max(1, epochs))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, build_lr_lambda(self.planned, epochs, steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """The stage's `grad_clip=` (max L2 norm), unless the Trainer was given its own."""
        value = gradient_clip_val if gradient_clip_val is not None else self.planned.grad_clip
        if value is not None:
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=gradient_clip_algorithm or "norm")

    def train_dataloader(self) -> DataLoader:
        return self.data.train

    def val_dataloader(self) -> DataLoader:
        return self.data.val if self.data.val is not None else self.data.test


def _needs_data_size(recipe: Recipe, stage: str) -> bool:
    from kdlang.ir import terms as T
    from kdlang.library import losses

    plan = recipe.plan(stage)
    return any("index" in losses.info(call.fn).needs for loss in plan.losses for call in T.loss_calls(loss.term))
