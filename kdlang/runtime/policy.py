"""The recipe's metric policy (`report top1 on test, select best on val`): what is reported and
which epoch's weights a stage hands on."""

from __future__ import annotations

import attrs


@attrs.frozen
class Policy:
    metrics: tuple = ("top1",)
    split: str = "test"
    select: str = "last"
    select_split: str = "test"
    noise: tuple = ()

    @classmethod
    def from_recipe(cls, recipe) -> "Policy":
        report = recipe.program.report
        return cls(report.metrics, report.split, report.select, report.select_split, report.noise)

    def describe(self) -> str:
        picked = f"best on {self.select_split}" if self.select == "best" else "last epoch"
        return f"{', '.join(self.metrics)} on {self.split}, weights of the {picked}"
