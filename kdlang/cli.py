"""The `kdlang` command: check, render, fmt, taps, compile.

Exit codes: 0 clean (warnings allowed), 1 the recipe has errors, 2 usage or environment error.
No input file, however broken, produces a Python traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_RECIPE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with how kdlang was called or with the environment (exit code 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdlang",
        description="Knowledge-distillation recipes, checked before they train.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  kdlang check recipes/quickstart.kd\n  kdlang render recipes/quickstart.kd -o q.svg\n"
        "  kdlang compile recipes/quickstart.kd --run\n  kdlang fmt recipes/*.kd\n  kdlang taps zoo.resnet8",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, help, examples):
        return sub.add_parser(name, help=help, description=help, epilog="examples:\n" + examples,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    check = command("check", "parse and validate recipes; print diagnostics",
                    "  kdlang check recipes/quickstart.kd\n  kdlang check recipes/**/*.kd\n"
                    "  kdlang check --no-shapes R.kd   # skip shape inference (no torch forward)")
    check.add_argument("recipes", nargs="+", metavar="RECIPE")
    check.add_argument("--no-shapes", action="store_true", help="skip the shape-inference pass")
    check.add_argument("--quiet", "-q", action="store_true", help="print errors only, no warnings")

    render = command("render", "draw a recipe's graph (svg, png, pdf or dot)",
                     "  kdlang render R.kd -o R.svg\n  kdlang render R.kd -o R.dot   # needs no graphviz binary")
    render.add_argument("recipe", metavar="RECIPE")
    render.add_argument("-o", "--output", required=True, help="output file; the suffix picks the format")

    fmt = command("fmt", "format recipes canonically (in place)",
                  "  kdlang fmt R.kd\n  kdlang fmt --check recipes/*.kd\n  cat R.kd | kdlang fmt -")
    fmt.add_argument("files", nargs="+", metavar="FILE", help="files to format, or - for standard input")
    fmt.add_argument("--check", action="store_true", help="only report files that would change (exit 1)")

    taps = command("taps", "list a model's tappable layers with their output shapes",
                   "  kdlang taps zoo.resnet8\n  kdlang taps tv.resnet18 --input 3,224,224\n  kdlang taps --list")
    taps.add_argument("model", nargs="?", metavar="MODEL", help="zoo.NAME or tv.NAME")
    taps.add_argument("--input", help="input shape C,H,W (default: the model's own)")
    taps.add_argument("--classes", type=int, default=None, help="class count (default: the model's own)")
    taps.add_argument("--list", action="store_true", help="list the model names instead")

    comp = command("compile", "lower a recipe to torch; print its IR or train it",
                   "  kdlang compile R.kd --print-ir\n  kdlang compile R.kd --run\n"
                   "  kdlang compile R.kd --run --smoke            # two batches per stage\n"
                   "  kdlang compile R.kd --run --set stage.distill.epochs=2 --out runs/try\n"
                   "  kdlang compile R.kd --run --resume runs/try")
    comp.add_argument("recipe", metavar="RECIPE")
    comp.add_argument("--print-ir", action="store_true", help="print the lowered program, one node a line")
    comp.add_argument("--run", action="store_true", help="run every stage (train it, or only evaluate)")
    comp.add_argument("--smoke", action="store_true", help="run every stage for two batches")
    comp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a recipe value by dotted path (repeatable)")
    comp.add_argument("--out", help="run directory (default runs/<recipe>-<time>)")
    comp.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    comp.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's, else 0)")
    comp.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    comp.add_argument("--plugin", action="append", default=[], help="import a plugin module that registers models/losses")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        handler = globals()[f"_cmd_{args.command}"]
        return handler(args)
    except UsageError as exc:
        print(f"kdlang: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kdlang: interrupted", file=sys.stderr)
        return 130


def _checked(path: str, *, shapes: bool = True):
    from kdlang.check import check_path

    if Path(path).is_dir():
        raise UsageError(f"{path} is a directory; name the recipe files (e.g. {path}/*.kd)")
    if not Path(path).is_file():
        raise UsageError(f"no such recipe file: {path}")
    try:
        return check_path(path, skip=() if shapes else ("shapes",))
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def _print_diagnostics(checked, quiet=False) -> None:
    for d in checked.diagnostics:
        if quiet and d.severity != "error":
            continue
        print(d.format(checked.sources), file=sys.stderr)


def _cmd_check(args) -> int:
    """Check every file given, even after a bad one; the worst outcome sets the exit code."""
    status = EXIT_OK
    for path in args.recipes:
        try:
            checked = _checked(path, shapes=not args.no_shapes)
        except UsageError as exc:
            print(f"kdlang: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        _print_diagnostics(checked, args.quiet)
        if checked.errors:
            status = max(status, EXIT_RECIPE)
            print(f"{path}: {len(checked.errors)} error(s)", file=sys.stderr)
        else:
            warnings = len(checked.diagnostics)
            shown = f" ({warnings} warning(s))" if warnings and not args.quiet else ""
            print(f"{path}: ok{shown}")
    return status


def _cmd_render(args) -> int:
    from kdlang.graph.render import RenderError, render_to

    checked = _checked(args.recipe, shapes=False)
    if checked.graph is None:
        _print_diagnostics(checked)
        return EXIT_RECIPE
    _print_diagnostics(checked, quiet=True)
    try:
        render_to(checked.graph, args.output)
    except RenderError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {args.output}")
    return EXIT_RECIPE if checked.errors else EXIT_OK


def _cmd_fmt(args) -> int:
    from kdlang.diagnostics import SourceMap
    from kdlang.syntax.errors import SyntaxProblem
    from kdlang.syntax.formatter import format_text

    status = EXIT_OK
    for name in args.files:
        text = sys.stdin.read() if name == "-" else _read(name)
        try:
            pretty = format_text(text, "<stdin>" if name == "-" else name)
        except SyntaxProblem as problem:
            print(problem.diagnostic.format(SourceMap({problem.diagnostic.span.file: text})), file=sys.stderr)
            status = EXIT_RECIPE
            continue
        if name == "-":
            sys.stdout.write(pretty)
        elif args.check:
            if pretty != text:
                print(f"{name}: would reformat")
                status = EXIT_RECIPE
        elif pretty != text:
            Path(name).write_text(pretty, encoding="utf-8")
            print(f"{name}: formatted")
    return status


def _read(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {name}: {exc}") from None


def _cmd_taps(args) -> int:
    from kdlang.library import models

    if args.list or not args.model:
        for name in models.names():
            print(f"zoo.{name}")
        print("tv.NAME for any torchvision classification model (e.g. tv.resnet18)")
        return EXIT_OK
    from kdlang.lower.taps_cli import print_taps

    return print_taps(args.model, args.input, args.classes, UsageError)


def _cmd_compile(args) -> int:
    from kdlang.lower.compile_cli import run_compile

    return run_compile(args, UsageError)


if __name__ == "__main__":
    sys.exit(main())
