"""`kdlang compile --print-ir`: each stage's plan, one node a line, in execution order (fx-style).

Printed from the IR and the stage plans alone: no stage module or loss module is built.
"""

from __future__ import annotations

from kdlang.ir import nodes as N
from kdlang.ir import shapes as S
from kdlang.ir import terms as T
from kdlang.lower.stage_plan import StagePlan, plan_stage


def _shape(shapes: S.Shapes, key: str) -> str:
    shape = shapes.tensors.get(key)
    return "[" + ", ".join(map(str, shape)) + "]" if shape else "[?]"


def term_text(term: T.Term) -> str:
    if isinstance(term, T.TTensor):
        return f"%{term.key}"
    if isinstance(term, T.TList):
        return "[" + ", ".join(term_text(t) for t in term.items) + "]"
    if isinstance(term, T.TScalar):
        return f"{term.value:g}" if isinstance(term.value, float) else term.text
    if isinstance(term, T.TLabels):
        return "%label"
    if isinstance(term, T.TIndex):
        return "%index"
    if isinstance(term, T.TBin):
        return f"({term_text(term.left)} {term.op} {term_text(term.right)})"
    if isinstance(term, T.TReduce):
        return f"{term.op}(" + ", ".join(term_text(t) for t in term.items) + ")"
    if isinstance(term, T.TMix):
        pairs = ", ".join(f"{term_text(w)}*{term_text(h)}" for h, w in zip(term.heads, term.weights))
        return f"mix({pairs}{', normalized' if term.normalize else ''})"
    if isinstance(term, T.TLoss):
        hyper = "".join(f", {k}={_hyper_text(v)}" for k, v in term.hyper.items())
        return f"{term.fn}[{term.instance}](" + ", ".join(term_text(t) for t in term.inputs) + hyper + ")"
    return "?"


def _hyper_text(value: object) -> str:
    return term_text(value) if isinstance(value, T.TScalar) else repr(value)


def format_ir(program: N.Program) -> str:
    """The program as `--print-ir` shows it (the shape pass must have run)."""
    shapes = S.of(program)
    lines = [f"# {program.title}"]
    for stage in program.stages:
        lines += _stage_lines(plan_stage(program, stage), shapes)
    return "\n".join(lines)


def _stage_lines(plan: StagePlan, shapes: S.Shapes) -> list[str]:
    stage = plan.stage
    evaluated = [c for c in stage.evaluates if c not in plan.trained]
    if stage.evaluation_only:
        header = f"evaluation, evaluates: {', '.join(evaluated)}"
    else:
        assert stage.epochs is not None  # a training stage has an epoch count (kdlang.ir.verify checks it)
        header = f"epochs={stage.epochs.value}, trains: {', '.join(sorted(plan.trained))}"
        header += f", evaluates: {', '.join(evaluated)}" if evaluated else ""
    lines = [f"stage {stage.name} ({header})"]
    for name in plan.order:
        mode = "frozen, inference_mode" + (", stops after its last tap" if name in plan.truncated else "") \
            if name in plan.frozen_side else \
            ("train" if name in plan.trained else "frozen, grad passes through")
        if plan.kinds[name] == "model":
            taps = plan.taps_by_model.get(name, {})
            outs = ", ".join(f"%{k}{_shape(shapes, k) if ':' not in k else ''}" for k in taps)
            lines.append(f"  {outs or '(no taps)'} = model {name}(%input)  # {mode}")
        else:
            outs = ", ".join(f"%{k}{_shape(shapes, k)}" for k in sorted(plan.produces[name]))
            lines.append(f"  {outs} = {plan.kinds[name]} {name}(%{plan.inputs[name]})  # {mode}")
    for excite in stage.excites:
        lines.append(f"  %{excite.key}{_shape(shapes, excite.key)} = excite {term_text(excite.term)}")
    for loss in stage.losses:
        lines.append(f"  loss {loss.name} = {term_text(loss.term)}")
    heads = ", ".join(f"{h}=%{k}" for h, k in plan.heads)
    lines.append(f"  evaluate {heads or '(nothing)'}")
    return lines
