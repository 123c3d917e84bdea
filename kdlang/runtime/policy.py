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
        from kdlang.graph import evaluate

        reports = recipe.symbols.reports
        if not reports:
            return cls()
        node = reports[0]
        return cls(
            metrics=tuple(m.text for m in node.metrics),
            split=node.split.text,
            select=node.select.text if node.select else "last",
            select_split=node.select_split.text if node.select_split else node.split.text,
            noise=tuple(float(evaluate.value(n)) for n in node.noise.items) if node.noise else (),
        )

    def describe(self) -> str:
        picked = f"best on {self.select_split}" if self.select == "best" else "last epoch"
        return f"{', '.join(self.metrics)} on {self.split}, weights of the {picked}"
