"""A recipe's components built and ready to compile: the IR lowered to torch modules.

`kdlang.load(path)` returns a `Recipe`. Models, granularities and branches are built once and
shared by every stage, so what one stage trains the next one reads. `Recipe.compile(stage)`
returns that stage's `StageModule`. Models come from the shape pass (built there once, with the
program's seed); granularities and branches are built here, in data-flow order, as stages need them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kdlang import checkpoint_io
from kdlang.diagnostics import RecipeError, error, warning
from kdlang.ir import nodes as N
from kdlang.ir import passes as ir_passes
from kdlang.ir import shapes as S
from kdlang.ir import terms as T
from kdlang.library import branches as branch_lib
from kdlang.lower.module import StageModule
from kdlang.lower.stage_plan import StagePlan, plan_stage


LOWERED = "lowered"  # program.meta key: a Recipe owns the models the shape pass built


class Recipe:
    def __init__(self, program: N.Program, *, allow_missing_checkpoints: bool = False):
        self.program = program
        if program.meta.pop(LOWERED, False):  # a second Recipe of one program builds its own models
            program.meta.pop(S.KEY, None)
        program.meta[LOWERED] = True
        if S.KEY not in program.meta:  # checked without shapes, or lowered before: run the IR passes now
            problems = ir_passes.run(program)
            if problems:
                raise RecipeError(problems, program.sources)
        self.shapes = S.of(program)
        self.path = Path(program.path)
        self.seed = program.seed
        torch.set_rng_state(self.shapes.init_rng)  # branches initialise where the models left the RNG
        self.num_data = None  # set from the loaded data before losses that need it are built
        self.warnings: list = []
        self._components: dict = {}
        self._losses: dict = {}
        self._plans: dict = {}
        self._load_checkpoints(allow_missing_checkpoints)

    @property
    def title(self) -> str:
        return self.program.title

    @property
    def stages(self) -> list[str]:
        return [stage.name for stage in self.program.stages]

    @property
    def sources(self):
        return self.program.sources

    # ---- components ---------------------------------------------------------------------
    def component(self, name: str) -> torch.nn.Module:
        if name not in self._components:
            self._components[name] = self._build(self.program.components[name])
        return self._components[name]

    def _build(self, component: N.Component) -> torch.nn.Module:
        if isinstance(component, N.Model):
            return self.shapes.models[component.name].module
        in_shape = self.shapes.tensors[component.tap.name]
        if isinstance(component, N.Granularity):
            return branch_lib.Granularity(self.shapes.granularity_widths[component.name], S.level_args(component),
                                          self.shapes.classes, decoders=component.decoders)
        return branch_lib.build_branch(component.call.name, component.call.values(), in_shape, self.shapes.classes)

    def built_components(self) -> list[str]:
        """The components built so far (what a checkpoint of the whole run must hold)."""
        return list(self._components)

    def all_components(self) -> list[str]:
        return list(self.program.components)

    def plan(self, stage: str) -> StagePlan:
        if stage not in self._plans:
            self._plans[stage] = plan_stage(self.program, self.program.stage(stage))
        return self._plans[stage]

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
        shapes = [S.term_shape(self.shapes, t) for t in call.inputs]
        return shapes[0], (shapes[1] if len(shapes) > 1 else None)

    # ---- compile ------------------------------------------------------------------------
    def compile(self, stage: str | None = None, device: str | torch.device = "cpu") -> StageModule:
        plan = self.plan(stage or self.stages[0])
        components = {name: self.component(name) for name in plan.order}
        losses = {call.instance: self.loss_module(call) for loss in plan.losses for call in T.loss_calls(loss.term)}
        module = StageModule(plan, components, losses)
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
        for component, checkpoint in self.program.checkpoints():
            if checkpoint.path is None:
                continue
            path = self._checkpoint_path(checkpoint.path)
            if not path.exists():
                diagnostic = (warning if allow_missing else error)(
                    f"checkpoint \"{checkpoint.path}\" for `{component.name}` does not exist"
                    + (": it keeps its random initialisation (smoke run)" if allow_missing else ""),
                    checkpoint.span,
                    hint="train it first (see the recipe header), or point `from` at an existing .pt file")
                (self.warnings if allow_missing else problems).append(diagnostic)
                if isinstance(component, N.Model):
                    self.uncalibrated.add(component.name)
                continue
            problem = self._load_checkpoint(component, checkpoint, path)
            if problem is not None:
                problems.append(problem)
        if problems:
            raise RecipeError(problems, self.program.sources)

    def _load_checkpoint(self, component: N.Component, checkpoint: N.Checkpoint, path: Path):
        """Load one `from "file"` (its `key=`: the state dict at that dotted path inside the file; a
        torch checkpoint or a safetensors file); a diagnostic when the file cannot go into the component."""
        try:
            module = self.component(component.name)
            state = checkpoint_io.read_state_dict(path, key=checkpoint.key)
            if isinstance(component, N.Granularity):  # a branch stage saves decoders a student recipe may not build
                own = module.state_dict()
                state = {k: v for k, v in state.items() if k in own or ".decoder." not in k}
                if any(".decoder." in k and k not in state for k in own) and \
                        all(".decoder." not in k for k in state):
                    return self._no_decoders(component, checkpoint)
            checkpoint_io.load_into(module, state, path)
        except checkpoint_io.CheckpointError as exc:  # damaged, hostile or mismatched files are refused
            return error(f"cannot load checkpoint \"{checkpoint.path}\" into `{component.name}`: it {exc.reason}",
                         checkpoint.span, hint=exc.fix)
        except Exception as exc:  # what torch still refuses once keys and shapes fit
            return error(f"cannot load checkpoint \"{checkpoint.path}\" into `{component.name}`: "
                         f"{_first_line(exc)}", checkpoint.span,
                         hint="point `from` at a state_dict or at kdlang's exported student.pt")
        return None

    def _checkpoint_path(self, written: str) -> Path:
        """A `from "file"` path (`~` is the home folder): relative to the recipe, else to the working
        directory."""
        path = Path(written).expanduser()
        beside = path if path.is_absolute() else self.path.parent / path
        return beside if beside.exists() else path

    def checkpoint_files(self) -> list[Path]:
        """The existing files the recipe's `from "file"` clauses load weights from."""
        paths = [self._checkpoint_path(c.path) for _, c in self.program.checkpoints() if c.path is not None]
        return [p for p in dict.fromkeys(paths) if p.is_file()]

    def _no_decoders(self, component: N.Granularity, checkpoint: N.Checkpoint):
        """A granularity whose level logits the recipe needs, loaded from a file of encoders only."""
        readers = [s.name for s in self.program.stages if component.name in s.evaluates]
        why = f"stage `{readers[0]}` evaluates it" if readers else \
            f"the recipe reads `{component.name}.LEVEL.logits`"
        return error(f"checkpoint \"{checkpoint.path}\" for `{component.name}` holds no decoders (no class logits), "
                     f"but {why}", checkpoint.span,
                     hint=f"load it from a run whose losses read `{component.name}.LEVEL.logits` (its decoders are "
                     "saved with it), or read its codes only")


def _first_line(exc: Exception) -> str:
    """An exception's first line, or its type when it has no message (an empty EOFError)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
