"""`kdlang compile --print-ir`: the lowered program, one node a line, in execution order."""

from __future__ import annotations

from kdlang.lower import terms as T


def _shape(recipe, key) -> str:
    shape = recipe.plan.shapes.get(key)
    return "[" + ", ".join(map(str, shape)) + "]" if shape else "[?]"


def term_text(term) -> str:
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


def _hyper_text(value) -> str:
    return term_text(value) if isinstance(value, T.TScalar) else repr(value)


def format_ir(recipe) -> str:
    lines = [f"# {recipe.title}"]
    for stage in recipe.stages:
        module = recipe.compile(stage)
        evaluated = [c for c in recipe.graph.evaluated_in(stage) if c not in module.trained]
        if recipe.graph.evaluation_only(stage):
            header = f"evaluation, evaluates: {', '.join(evaluated)}"
        else:
            header = f"epochs={recipe.graph.stage_epochs(stage)}, trains: {', '.join(sorted(module.trained))}"
            header += f", evaluates: {', '.join(evaluated)}" if evaluated else ""
        lines.append(f"stage {stage} ({header})")
        for name in module.order:
            kind = recipe.graph.kind(name)
            mode = "frozen, inference_mode" if name in module.frozen_side else \
                ("train" if name in module.trained else "frozen, grad passes through")
            if kind == "model":
                taps = module.taps_by_model.get(name, {})
                outs = ", ".join(f"%{k}{_shape(recipe, k) if ':' not in k else ''}" for k in taps)
                lines.append(f"  {outs or '(no taps)'} = model {name}(%input)  # {mode}")
            else:
                node = recipe.graph.decl(name).node
                outs = ", ".join(f"%{k}{_shape(recipe, k)}" for k in sorted(recipe.produces(name)))
                lines.append(f"  {outs} = {kind} {name}(%{node.tap.text})  # {mode}")
        for key in module.excite_keys:
            lines.append(f"  %{key}{_shape(recipe, key)} = excite {term_text(module.terms[key])}")
        for key in module.loss_keys:
            lines.append(f"  loss {module.loss_names[key]} = {term_text(module.terms[key])}")
        heads = ", ".join(f"{h}=%{k}" for h, k in module.heads)
        lines.append(f"  evaluate {heads or '(nothing)'}")
    return "\n".join(lines)
