"""Values the runtime cannot run, and inputs too big or too deep, get positioned diagnostics from
`kdlang check` (issue 8: never a traceback, never an "internal error"). Each test checks recipes
like a user, through `kdlang.cli.main(["check", ...])` with the shape pass on."""

from __future__ import annotations

import re
import time

import pytest

from kdlang.check import check_text
from kdlang.cli import main

BASE = """kdlang 1
data fashion_mnist(batch=128, val=5000)
model teacher = zoo.cnn_wide() from "runs/teacher.pt" frozen
model student = zoo.cnn_small()
tap t_logits = teacher.output
tap s_logits = student.output
stage distill(epochs=2) {
  train student
  optimizer sgd(lr=0.1, momentum=0.9, weight_decay=5e-4)
  loss ce = ce(s_logits, label)
  loss kd = kd(s_logits, t_logits, T=4)
}
report top1 on test, select best on val
"""


def check(tmp_path, capsys, text: str) -> tuple[int, str]:
    path = tmp_path / "r.kd"
    path.write_text(text, encoding="utf-8")
    code = main(["check", str(path)])
    output = capsys.readouterr().err
    assert "Traceback" not in output and "internal error" not in output, output
    return code, output


def edited(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def where(text: str, at: str) -> tuple[int, int]:
    """Line and column of the first `at` in `text`; of its value when `at` reads `key=value`."""
    offset = text.index(at)
    key = at.split("=", 1)[0]
    if "=" in at and key.isidentifier():
        offset += len(key) + 1
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def assert_error(code: int, output: str, text: str, at: str, message: str, hint: str = "") -> None:
    """Exit 1 with `r.kd:LINE:COL: error: ...MESSAGE...` at `at` (see `where`) and a hint containing HINT."""
    assert code == 1, output
    line, col = where(text, at)
    found = re.search(rf"r\.kd:{line}:{col}: error: [^\n]*{re.escape(message)}", output)
    assert found, f"no error at {line}:{col} containing {message!r}:\n{output}"
    assert hint in output, f"no hint {hint!r}:\n{output}"


def test_the_base_recipe_is_clean(tmp_path, capsys):
    assert check(tmp_path, capsys, BASE) == (0, "")


@pytest.mark.parametrize("value, shown", [("0", "0"), ("-1", "-1"), ("true", "true"), ("2.5", "2.5")])
def test_batch_is_a_positive_whole_number(tmp_path, capsys, value, shown):
    text = edited("batch=128", f"batch={value}")
    assert_error(*check(tmp_path, capsys, text), text, f"batch={value}",
                 f"`batch=` must be a positive whole number, not {shown}", "a whole number from 1 to 65536")


@pytest.mark.parametrize("old, new, message, hint", [
    ("lr=0.1", "lr=-1", "`lr=` must be a positive number, not -1", "a finite number > 0"),
    ("lr=0.1", 'lr="fast"', '`lr=` must be a positive number, not "fast"', "a finite number > 0"),
    ("lr=0.1", "lr=1e309", "`lr=` must be a positive number, not inf", "a finite number > 0"),
    ("momentum=0.9", "momentum=1", "`momentum=` must be a non-negative number, not 1", "in [0, 1)"),
    ("weight_decay=5e-4", "weight_decay=-1", "`weight_decay=` must be a non-negative number, not -1",
     "a finite number >= 0"),
])
def test_optimizer_values_are_in_range(tmp_path, capsys, old, new, message, hint):
    text = edited(old, new)
    assert_error(*check(tmp_path, capsys, text), text, new, message, hint)


@pytest.mark.parametrize("val", ["60000", "70000"])
def test_val_leaves_images_to_train_on(tmp_path, capsys, val):
    text = edited("val=5000", f"val={val}")
    assert_error(*check(tmp_path, capsys, text), text, f"val={val}",
                 f"`val=` holds out {val} images, but `fashion_mnist` has only 60000", "a whole number from 0 to 59999")


def test_val_of_synthetic_data_is_judged_by_its_size(tmp_path, capsys):
    text = edited("fashion_mnist(batch=128, val=5000)", "synthetic(shape=[1, 28, 28], size=300, val=300)")
    assert_error(*check(tmp_path, capsys, text), text, "val=300", "`val=` holds out 300 images, but `synthetic` has only 300")


@pytest.mark.parametrize("shape, message, hint", [
    ("[1, 100000, 100000]", "not [1, 100000, 100000]", "each a whole number from 1 to 65536"),
    ("[1, 0, 28]", "must be a list of 3 items, each a whole number from 1 to 65536, not [1, 0, 28]", ""),
    ("[1, -28, 28]", "not [1, -28, 28]", "a list of 3 items"),
    ("[3, 8192, 8192]", "holds 201326592 numbers, more than the 16777216", "use a smaller shape"),
])
def test_absurd_input_shapes_are_refused(tmp_path, capsys, shape, message, hint):
    text = edited("fashion_mnist(batch=128, val=5000)", f"synthetic(shape={shape}, val=10)")
    assert_error(*check(tmp_path, capsys, text), text, f"shape={shape}", message, hint)


@pytest.mark.parametrize("old, new, at, message", [
    ("zoo.cnn_small()", "zoo.cnn_small(classes=-1)", "classes=-1", "`classes=` must be a positive whole number, not -1"),
    ("zoo.cnn_small()", "zoo.cnn_small(classes=1e18)", "classes=1e18",
     "`classes=` must be a positive whole number, not 1e+18"),
    ("fashion_mnist(batch=128, val=5000)", "synthetic(classes=100000000, shape=[1, 28, 28], val=10)",
     "classes=100000000", "`classes=` must be a positive whole number, not 100000000"),
])
def test_class_counts_are_bounded(tmp_path, capsys, old, new, at, message):
    text = edited(old, new)
    assert_error(*check(tmp_path, capsys, text), text, at, message, "from 2 to 100000")


@pytest.mark.parametrize("out, shown", [("1..2", "a range"), ("-1e309", "-inf"), ("0", "0")])
def test_branch_widths_are_positive_whole_numbers(tmp_path, capsys, out, shown):
    text = edited("tap s_logits = student.output\n",
                  f"tap s_logits = student.output\nbranch head on s_logits = linear(out={out})\n")
    text = edited("loss ce = ce(s_logits, label)", "loss ce = ce(s_logits, label) + ce(head, label)", text)
    text = text.replace("train student", "train student, head")
    assert_error(*check(tmp_path, capsys, text), text, f"out={out}",
                 f"`out=` must be a positive whole number or none, not {shown}", "from 1 to 100000 or none")


@pytest.mark.parametrize("old, new, at, message", [
    ("epochs=2", "epochs=2.5", "epochs=2.5", "`epochs=` must be a positive whole number, not 2.5"),
    ("epochs=2", "epochs=1e18", "epochs=1e18", "`epochs=` must be a positive whole number, not 1e+18"),
    ("epochs=2", "epochs=2*1.25", "epochs=2*1.25", "`epochs=` must be a positive whole number, not 2.5"),
    ("T=4", "T=-1", "T=-1", "the temperature is -1 in stage `distill`"),
    ("T=4", "T=1e309", "T=1e309", "the temperature is not finite"),
    ("loss kd = kd", "loss kd = 1e309 * kd", "1e309 *", "the weight is not finite"),
])
def test_epochs_temperatures_and_weights(tmp_path, capsys, old, new, at, message):
    text = edited(old, new)
    assert_error(*check(tmp_path, capsys, text), text, at, message)


@pytest.mark.parametrize("loss, at", [
    (" + ".join(["ce(s_logits, label)"] * 2000), None),
    ("ce(s_logits, label) * " + "-" * 2000 + "1", "-" * 1801 + "1"),  # the 200th `-`
])
def test_deep_nesting_is_a_diagnostic_not_a_recursion_error(tmp_path, capsys, loss, at):
    text = edited("loss ce = ce(s_logits, label)", f"loss ce = {loss}")
    code, output = check(tmp_path, capsys, text)
    assert code == 1 and "r.kd:10:" in output and "expression nested too deeply (limit 200)" in output, output
    if at is not None:
        assert_error(code, output, text, at, "expression nested too deeply (limit 200)")


def test_parentheses_add_no_nesting(tmp_path, capsys):
    text = edited("T=4", "T=" + "(" * 2000 + "4" + ")" * 2000)
    assert check(tmp_path, capsys, text) == (0, "")


def test_long_chains_of_declarations_are_a_diagnostic(tmp_path, capsys):
    chain = "schedule s0 = 4\n" + "".join(f"schedule s{i} = s{i - 1} + 0\n" for i in range(1, 2000))
    code, output = check(tmp_path, capsys, edited("T=4", "T=s1999").replace("report", chain + "report"))
    assert code == 1 and "too deeply" in output, output


def test_recipe_text_is_bounded_and_many_diagnostics_print_fast(tmp_path, capsys):
    huge = check_text("kdlang 1\n" + "# padding\n" * 120_000)
    assert [d.message for d in huge.errors] == ["the recipe is 1200009 characters long, over the 1048576 "
                                                "a recipe may have"]
    many = BASE + "".join(f"tap unused_{i} = student.output\n" for i in range(4000))
    start = time.perf_counter()
    code, output = check(tmp_path, capsys, many)
    assert code == 0 and output.count("is never used") == 4000
    assert time.perf_counter() - start < 20
