"""`kdlang.load(path)` -> Recipe: a checked recipe whose components are built and ready to compile.

Models, granularities and branches are built once and shared by every stage, so what one stage
trains the next one reads. `Recipe.compile(stage)` returns that stage's `StageModule`.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import torch

from kdlang import checkpoint_io
from kdlang.diagnostics import RecipeError, error, warning
from kdlang.graph import evaluate
from kdlang.library import branches as branch_lib
from kdlang.lower import terms as T
from kdlang.lower.module import StageModule
from kdlang.lower.plan import make_plan, stage_classes, static_kwargs
from kdlang.syntax import ast

OUTPUT = "output"


class Recipe:
    def __init__(self, checked, *, allow_missing_checkpoints: bool = False, seed: int | None = None):
        if not checked.ok:
            raise RecipeError(checked.errors or checked.diagnostics, checked.sources)
        self.checked = checked
        self.graph = checked.graph
        self.symbols = self.graph.symbols
        self.path = Path(checked.program.root.file)
        self.seed = _runtime_seed(self.symbols) if seed is None else int(seed)
        torch.manual_seed(self.seed)  # weights are initialised here: the seed decides them
        self.plan, problems = make_plan(self.graph, build_losses=False)
        if problems:
            raise RecipeError(problems, checked.sources)
        self.num_data = None  # set from the loaded data before losses that need it are built
        self.warnings: list = []
        self._components: dict = {}
        self._losses: dict = {}
        self._flow = self.graph.flow()
        self._load_checkpoints(allow_missing_checkpoints)

    @property
    def title(self) -> str:
        return self.checked.program.title or self.path.stem

    @property
    def stages(self) -> list[str]:
        return self.graph.stages

    # ---- components ---------------------------------------------------------------------
    def component(self, name: str) -> torch.nn.Module:
        if name not in self._components:
            self._components[name] = self._build(name)
        return self._components[name]

    def _build(self, name: str) -> torch.nn.Module:
        kind = self.graph.kind(name)
        if kind == "model":
            return self.plan.models[name].module
        node = self.graph.decl(name).node
        in_shape = self.plan.shapes[node.tap.text]
        if kind == "granularity":
            levels = evaluate.level_args(self.symbols, name)
            return branch_lib.Granularity(self.plan.granularity_widths[name], levels, self.plan.classes,
                                          decoders=name in self.plan.decoders)
        return branch_lib.build_branch(node.source.name, static_kwargs(node.source), in_shape, self.plan.classes)

    def built_components(self) -> list[str]:
        """The components built so far (what a checkpoint of the whole run must hold)."""
        return list(self._components)

    def all_components(self) -> list[str]:
        return self.component_order(
            [d.key for d in self.symbols.decls.values() if d.kind in ("model", "granularity", "branch")]
        )

    def component_order(self, names) -> list[str]:
        names = set(names)
        return [n for n in nx.lexicographical_topological_sort(self._flow) if n in names]

    def upstream(self, name: str) -> set:
        """The component and every component it reads from."""
        found = {name}
        kind = self.graph.kind(name)
        if kind in ("granularity", "branch"):
            tap = self.graph.decl(name).node.tap.text
            model = self.plan.taps.get(tap, (None,))[0]
            if model is not None:
                found |= self.upstream(model)
        return found

    def produces(self, name: str) -> set:
        kind = self.graph.kind(name)
        if kind == "model":
            return {key for key, (model, _) in self.plan.taps.items() if model == name} | {f"{name}:{OUTPUT}"}
        return {key for key in self.plan.shapes if key.startswith(name + ".")}

    def required_keys(self, keys) -> set:
        """`keys` plus everything they are computed from (excitation inputs, the taps under branches)."""
        out, todo = set(), list(keys)
        while todo:
            key = todo.pop()
            if key in out:
                continue
            out.add(key)
            if key in self.plan.terms:
                todo.extend(T.tensor_keys(self.plan.terms[key]))
            owner = key.split(".")[0]
            if owner in self.symbols.decls and self.graph.kind(owner) in ("granularity", "branch") and key != owner:
                todo.append(self.graph.decl(owner).node.tap.text)
        return out

    def components_for(self, keys) -> list[str]:
        wanted = self.required_keys(keys)
        return [c for c in self.all_components() if self.produces(c) & wanted]

    def taps_for(self, keys) -> dict:
        wanted = self.required_keys(keys)
        out: dict = {}
        for key, (model, path) in self.plan.taps.items():
            if key in wanted:
                out.setdefault(model, {})[key] = path
        for model in self.plan.models:
            if f"{model}:{OUTPUT}" in wanted:
                out.setdefault(model, {})[f"{model}:{OUTPUT}"] = OUTPUT
        return out

    def heads(self, stage: str, evaluated: bool = True) -> list[tuple[str, str]]:
        """(head name, tensor key) of every classifier a stage evaluates for accuracy: those it
        trains (in data-flow order; the first one decides `select best`), then, unless `evaluated`
        is false, those its `evaluate` items name (in the order written)."""
        heads = []
        classes = stage_classes(self.plan, stage)
        trained = self.component_order(self.graph.trained_in(stage))
        evaluated = [c for c in self.graph.evaluated_in(stage) if c not in trained] if evaluated else []
        for name in trained + evaluated:
            kind = self.graph.kind(name)
            if kind == "model":
                heads.append((name, f"{name}:{OUTPUT}"))
            elif kind == "granularity" and name in self.plan.decoders:
                for level in evaluate.level_args(self.symbols, name):
                    heads.append((f"{name}.{level}", f"{name}.{level}.logits"))
            elif kind == "branch" and self.plan.shapes.get(f"{name}.out") == (classes,):
                heads.append((name, f"{name}.out"))
        return heads

    # ---- losses -------------------------------------------------------------------------
    def loss_module(self, call: T.TLoss) -> torch.nn.Module:
        if call.instance not in self._losses:
            from kdlang.library import losses

            s_shape, t_shape = self._loss_shapes(call)
            hyper = {k: (v.at(0.0) if isinstance(v, T.TScalar) else v) for k, v in call.hyper.items()}
            needs_data = "index" in losses.info(call.fn).needs
            self._losses[call.instance] = losses.build(
                call.fn, s_shape=s_shape, t_shape=t_shape,
                num_data=(self.num_data or 4096) if needs_data else None, **hyper)
        return self._losses[call.instance]

    def _loss_shapes(self, call):
        def shape(term):
            if isinstance(term, T.TList):
                return [shape(t) for t in term.items]
            return self.plan.shapes[term.key]

        shapes = [shape(t) for t in call.inputs]
        return shapes[0], (shapes[1] if len(shapes) > 1 else None)

    # ---- compile ------------------------------------------------------------------------
    def compile(self, stage: str | None = None, device: str | torch.device = "cpu") -> StageModule:
        stage = stage or self.stages[0]
        if stage not in self.stages:
            raise KeyError(f"no stage {stage!r}; stages: {', '.join(self.stages)}")
        module = StageModule(self, stage)
        module.freeze_others()
        return module.to(device)

    def calibrate_batchnorm(self, names, batches) -> list[str]:
        """Give randomly initialised models (a smoke run's missing checkpoints) BatchNorm statistics
        of real batches. With the initial running statistics (mean 0, var 1), an eval-mode deep
        ResNet's activations grow by orders of magnitude per stage, which no trained model does and
        which makes losses on them overflow. Returns the models calibrated."""
        calibrated = [name for name in names if name in self.uncalibrated]
        for name in calibrated:
            model = self.component(name)
            norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
            momenta = [norm.momentum for norm in norms]
            for norm in norms:
                norm.reset_running_stats()
                norm.momentum = None  # a cumulative average over the calibration batches
            was_training = model.training
            model.train()
            with torch.no_grad():
                for inputs in batches:
                    model(inputs)
            model.train(was_training)
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum
            self.uncalibrated.discard(name)
        return calibrated

    # ---- checkpoints --------------------------------------------------------------------
    def _load_checkpoints(self, allow_missing: bool) -> None:
        problems = []
        self.uncalibrated = set()  # models left at random init (smoke runs): see calibrate_batchnorm
        for decl in self.symbols.decls.values():
            checkpoint = getattr(decl.node, "checkpoint", None)
            if decl.kind not in ("model", "granularity", "branch") or checkpoint is None or checkpoint.path is None:
                continue
            path = self._checkpoint_path(checkpoint.path)
            if not path.exists():
                diagnostic = (warning if allow_missing else error)(
                    f"checkpoint \"{checkpoint.path}\" for `{decl.name}` does not exist"
                    + (": it keeps its random initialisation (smoke run)" if allow_missing else ""),
                    checkpoint.span,
                    hint="train it first (see the recipe header), or point `from` at an existing .pt file")
                (self.warnings if allow_missing else problems).append(diagnostic)
                if decl.kind == "model":
                    self.uncalibrated.add(decl.key)
                continue
            try:
                component = self.component(decl.key)
                state = checkpoint_io.read_state_dict(path)
                if decl.kind == "granularity":  # a branch stage saves decoders a student recipe may not build
                    own = component.state_dict()
                    state = {k: v for k, v in state.items() if k in own or ".decoder." not in k}
                    if any(".decoder." in k and k not in state for k in own) and \
                            all(".decoder." not in k for k in state):
                        problems.append(self._no_decoders(decl, checkpoint))
                        continue
                checkpoint_io.load_into(component, state, path)
            except checkpoint_io.CheckpointError as exc:  # damaged, hostile or mismatched files are refused
                problems.append(error(f"cannot load checkpoint \"{checkpoint.path}\" into `{decl.name}`: "
                                      f"it {exc.reason}", checkpoint.span, hint=exc.fix))
            except Exception as exc:  # what torch still refuses once keys and shapes fit
                problems.append(error(f"cannot load checkpoint \"{checkpoint.path}\" into `{decl.name}`: "
                                      f"{_first_line(exc)}", checkpoint.span,
                                      hint="point `from` at a state_dict or at kdlang's exported student.pt"))
        if problems:
            raise RecipeError(problems, self.checked.sources)

    def _checkpoint_path(self, written: str) -> Path:
        """A `from "file"` path: relative to the recipe, else to the working directory."""
        path = Path(written)
        beside = path if path.is_absolute() else self.path.parent / path
        return beside if beside.exists() else path

    def checkpoint_files(self) -> list[Path]:
        """The existing files the recipe's `from "file"` clauses load weights from."""
        written = [getattr(d.node, "checkpoint", None) for d in self.symbols.decls.values()]
        paths = [self._checkpoint_path(c.path) for c in written if c is not None and c.path is not None]
        return [p for p in dict.fromkeys(paths) if p.is_file()]

    def _no_decoders(self, decl, checkpoint):
        """A granularity whose level logits the recipe needs, loaded from a file of encoders only."""
        readers = [s for s in self.stages if decl.key in self.graph.evaluated_in(s)]
        why = f"stage `{readers[0]}` evaluates it" if readers else f"the recipe reads `{decl.name}.LEVEL.logits`"
        return error(f"checkpoint \"{checkpoint.path}\" for `{decl.name}` holds no decoders (no class logits), "
                     f"but {why}", checkpoint.span,
                     hint=f"load it from a run whose losses read `{decl.name}.LEVEL.logits` (its decoders are "
                     "saved with it), or read its codes only")


def _runtime_seed(symbols) -> int:
    for node in symbols.runtimes:
        for kwarg in node.kwargs:
            if kwarg.name.text == "seed" and isinstance(kwarg.value, ast.Num):
                return int(kwarg.value.value)
    return 0


def _first_line(exc: Exception) -> str:
    """An exception's first line, or its type when it has no message (an empty EOFError)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load(path, *, overrides=(), allow_missing_checkpoints: bool = False, seed: int | None = None) -> Recipe:
    """Load, check and build a recipe; raises `RecipeError` (with diagnostics) if it has errors."""
    from kdlang.check import check_path
    from kdlang.lower.overrides import apply_overrides

    texts = apply_overrides(Path(path), overrides) if overrides else None
    checked = check_path(path, texts=texts)
    return Recipe(checked, allow_missing_checkpoints=allow_missing_checkpoints, seed=seed)
