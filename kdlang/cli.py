"""The `kdlang` command: check, render, fmt, taps, compile, export, completion.

Exit codes: 0 clean (warnings allowed), 1 the recipe has errors, 2 usage or environment error.
No input file, however broken, produces a Python traceback.

Every command takes the output options `-q` (errors and results only), `-v` (also what it did and
how long it took) and `--color=auto|always|never` (NO_COLOR is honoured), before or after its name.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from kdlang import startup, terminal

EXIT_OK, EXIT_RECIPE, EXIT_USAGE = 0, 1, 2
ENV_PLUGINS = "KDLANG_PLUGINS"  # kdlang.plugins.ENV, named here so `--help` imports nothing


class UsageError(Exception):
    """A problem with how kdlang was called or with the environment (exit code 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdlang",
        description="Knowledge-distillation recipes, checked before they train.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  kdlang check recipes/quickstart.kd\n  kdlang render recipes/quickstart.kd -o q.svg\n"
        "  kdlang compile recipes/quickstart.kd --run\n  kdlang fmt recipes/*.kd\n  kdlang taps zoo.resnet8\n"
        "  kdlang completion bash > ~/.local/share/bash-completion/completions/kdlang",
    )
    parser.add_argument("--version", action=_Version, help="print kdlang's, torch's and Python's versions and exit")
    _add_output_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, help, examples):
        made = sub.add_parser(name, help=help, description=help, epilog="examples:\n" + examples,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_output_options(made, top=False)
        return made

    check = command("check", "parse and validate recipes; print diagnostics",
                    "  kdlang check recipes/quickstart.kd\n  kdlang check recipes/**/*.kd\n"
                    "  kdlang check --no-shapes R.kd   # skip shape inference (no torch forward)")
    check.add_argument("recipes", nargs="+", metavar="RECIPE")
    check.add_argument("--no-shapes", action="store_true", help="skip the shape-inference pass")
    check.add_argument("--debug", action="store_true", help="verify the IR after every pass (a kdlang bug check)")

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

    export = command("export", "write a finished run's student as safetensors, ONNX or TorchScript",
                     "  kdlang export runs/try --format onnx            # runs/try/student.onnx\n"
                     "  kdlang export runs/try --format torchscript -o student.ts.pt\n"
                     "  kdlang export runs/try --format onnx --input 3,64,64 -o student64.onnx")
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (holding student.pt)")
    export.add_argument("--format", required=True, choices=("safetensors", "onnx", "torchscript"),
                        help="onnx needs the onnx and onnxscript packages")
    export.add_argument("-o", "--output", metavar="FILE", help="output file (default: RUN_DIR/student.FORMAT)")
    export.add_argument("--input", metavar="C,H,W", help="input shape (default: the one the run trained on)")

    comp = command("compile", "lower a recipe to torch; print its IR or train it",
                   "  kdlang compile R.kd --print-ir\n  kdlang compile R.kd --run\n"
                   "  kdlang compile R.kd --run --smoke            # two batches per stage\n"
                   "  kdlang compile R.kd --run --set stage.distill.epochs=2 --out runs/try\n"
                   "  kdlang compile R.kd --run --resume runs/try\n"
                   "  kdlang compile R.kd --run --out runs/try --overwrite   # start runs/try afresh")
    comp.add_argument("recipe", metavar="RECIPE")
    comp.add_argument("--print-ir", action="store_true", help="print the lowered program, one node a line")
    comp.add_argument("--debug", action="store_true", help="verify the IR after every pass (a kdlang bug check)")
    comp.add_argument("--run", action="store_true", help="run every stage (train it, or only evaluate)")
    comp.add_argument("--smoke", action="store_true", help="run every stage for two batches")
    comp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a recipe value by dotted path (repeatable)")
    comp.add_argument("--out", help="run directory (default runs/<recipe>-<time>)")
    comp.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last committed epoch")
    comp.add_argument("--overwrite", action="store_true", help="let --out replace the run already in that folder")
    comp.add_argument("--force", action="store_true",
                      help="with --resume: continue even though the run was made by another recipe or values")
    comp.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's, else 0)")
    comp.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    comp.add_argument("--nproc", type=int, default=None, metavar="N",
                      help="with --run: train data-parallel in N local processes (gloo on CPU, nccl on GPU)")
    comp.add_argument("--log-every", type=_positive_int, default=None, metavar="N",
                      help="with --run: also print the running loss terms every N steps (as runtime(log_every=N))")
    comp.add_argument("--log", action="append", default=[], choices=("tensorboard", "mlflow"), metavar="LOGGER",
                      help="with --run: also log to tensorboard or mlflow (as runtime(log=[...]); repeatable)")
    comp.add_argument("--mlflow-uri", default=None, metavar="URI",
                      help="MLflow tracking URI (default: runtime(mlflow_uri=...), $MLFLOW_TRACKING_URI, ./mlruns)")

    report = command("report", "write one HTML page of runs: curves, final tables, differences, recipes",
                     "  kdlang report runs/try -o report.html\n"
                     "  kdlang report runs/alone runs/mas -o compare.html   # differences against the first run")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (the --out of a run)")
    report.add_argument("-o", "--output", required=True, metavar="FILE.html",
                        help="the page; a PNG per stage is written beside it")

    server = command("lsp", "run the language server for editors (LSP over standard input and output)",
                     "  kdlang lsp                       # an editor starts it (see docs/editors.md)\n"
                     "  kdlang lsp --no-shapes           # never build models while editing")
    server.add_argument("--check-delay", type=_seconds, default=0.3, metavar="S",
                        help="seconds without edits before checking (syntax errors show at once); default 0.3")
    server.add_argument("--shape-delay", type=_seconds, default=1.5, metavar="S",
                        help="seconds without edits before the shape pass (also run on save); default 1.5")
    server.add_argument("--no-shapes", action="store_true", help="skip the shape pass (it builds every model)")

    completion = command("completion", "print a shell completion script (bash, zsh or tcsh)",
                         "  kdlang completion bash > ~/.local/share/bash-completion/completions/kdlang\n"
                         "  kdlang completion zsh > ~/.zfunc/_kdlang     # with fpath+=~/.zfunc before compinit")
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    sweep = command("sweep", "run many recipes x seeds x --set grids as run directories; resumable",
                    "  kdlang sweep benchmarks/fashion/study.toml              # the whole study, resumable\n"
                    "  kdlang sweep 'recipes/x/*.kd' --seeds 0..2 --grid stage.distill.epochs=10,20 --out runs/x\n"
                    "  kdlang sweep recipes/cifar100/grid.toml --launcher slurm --partition gpu --time 12:00:00\n"
                    "  kdlang sweep study.toml --plan                        # list the runs; train nothing")
    sweep.add_argument("sources", nargs="+", metavar="SWEEP_OR_RECIPE", help="a sweep file (.toml) or recipes (globs)")
    sweep.add_argument("--seeds", metavar="LIST", help="seeds for every group that is not shared: 0,1,2 or 0..4")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=v1,v2",
                       help="one run per value, for the recipes that have KEY (repeatable: products)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a value in every recipe that has it (repeatable)")
    sweep.add_argument("--out", help="the sweep's folder (default: the sweep file's out, else runs/sweep)")
    sweep.add_argument("--smoke", action="store_true", help="every run for two batches a stage, into OUT-smoke")
    sweep.add_argument("--plan", action="store_true", help="list the runs, their folders and dependencies; run nothing")
    sweep.add_argument("--launcher", choices=("local", "ray", "slurm"), help="where runs execute (default local)")
    sweep.add_argument("--jobs", type=int, metavar="N",
                       help="runs at once (local default: one per GPU, else 1; ray/slurm: no cap)")
    sweep.add_argument("--address", help="ray: the cluster's address (default: start a local Ray)")
    sweep.add_argument("--gpus-per-run", type=float, metavar="G", help="ray/slurm (and local GPU slots): GPUs a run")
    sweep.add_argument("--cpus-per-run", type=float, metavar="C", help="ray/slurm: CPUs a run")
    sweep.add_argument("--nproc-per-run", type=int, metavar="N", help="train each run data-parallel in N processes")
    sweep.add_argument("--partition", help="slurm: the partition")
    sweep.add_argument("--time", help="slurm: a job's time limit (HH:MM:SS or minutes)")

    table = command("table", "tabulate runs or a sweep: mean ± std over seeds, paired differences",
                    "  kdlang table runs/study --where group=students --rows name --baseline kd\n"
                    "  kdlang table runs/cifar100/sweep.json --rows pair --cols method --baseline kd --format latex\n"
                    "  kdlang table runs/study --where group=students --rows name -o docs/results.md  # between its markers")
    table.add_argument("sources", nargs="+", metavar="RUNS_OR_SWEEP", help="sweep records, run folders, or folders of runs")
    table.add_argument("--rows", required=True, metavar="KEY", help="factor of the rows (recipe, name, folder, a grid key, ...)")
    table.add_argument("--cols", metavar="KEY", help="factor of the columns (default: one column, with each seed)")
    table.add_argument("--baseline", metavar="VALUE", help="a column (or, without --cols, a row) to pair against")
    table.add_argument("--where", action="append", default=[], metavar="KEY=VALUE", help="only these runs (repeatable)")
    table.add_argument("--metric", default="top1", help="the reported metric (default top1)")
    table.add_argument("--stage", help="the stage whose result counts (default: the last)")
    table.add_argument("--head", help="the head whose result counts (default: the stage's first, the student)")
    table.add_argument("--format", choices=("md", "latex", "html"), help="default: from -o's suffix, else md")
    table.add_argument("-o", "--output", metavar="FILE", help="write here (between its kdlang table markers, if it has them)")
    for reader in (check, render, taps, comp, export, server):  # every command that reads recipes or names models
        reader.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                            help=f"enable a plugin (a module that calls kdlang.register); also {ENV_PLUGINS}")
    return parser


def _add_output_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-q, -v and --color, on the main parser and on every command (so `kdlang -q check` and
    `kdlang check -q` both work); a command's copy has no default, which would undo the main one's."""
    def default(value):
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("output")
    loudness = group.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", default=default(False),
                          help="errors and results only: no warnings, progress bar or epoch lines")
    loudness.add_argument("-v", "--verbose", action="store_true", default=default(False),
                          help="also say what each command did and how long it took")
    group.add_argument("--color", choices=terminal.COLOR_CHOICES, default=default("auto"),
                       help="colour diagnostics and progress: auto (on a terminal, unless NO_COLOR is set), "
                            "always, never")


class _Version(argparse.Action):
    """`--version`: kdlang's version with torch's, read from the installed metadata (no torch import)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib import metadata

        from kdlang.version import __version__

        try:
            torch = f"torch {metadata.version('torch')}"
        except metadata.PackageNotFoundError:
            torch = "torch not installed"
        python = ".".join(map(str, sys.version_info[:3]))
        print(f"kdlang {__version__} ({torch}, Python {python})")
        parser.exit()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a positive whole number of steps, not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"a number of seconds from 0 to 60, not {text!r}")
    return value


# What a command is sure to import, imported first the way kdlang.startup says (the others, `fmt`,
# `completion`, `table`, import nothing heavy)
_FRONT_END = ("torch", "kdlang.check")
HEAVY_IMPORTS = {"check": _FRONT_END, "render": _FRONT_END, "compile": _FRONT_END, "taps": _FRONT_END,
                 "export": _FRONT_END, "sweep": _FRONT_END, "lsp": _FRONT_END}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = argv  # `--nproc` starts workers with the same command line
    args.parser = parser  # `completion` prints a script for it
    if args.quiet and args.verbose:  # one before the command's name, one after
        parser.error("-q and -v ask for opposite things; give one of them")
    verbosity = terminal.QUIET if args.quiet else terminal.VERBOSE if args.verbose else terminal.NORMAL
    terminal.configure(color=args.color, verbosity=verbosity, log_every=getattr(args, "log_every", None))
    if getattr(args, "debug", False):
        os.environ["KDLANG_VERIFY_IR"] = "1"  # read by kdlang.ir.passes (and by `--nproc` workers)
    try:
        startup.import_frozen(*HEAVY_IMPORTS.get(args.command, ()))
        if hasattr(args, "plugin"):
            _enable_plugins(args.plugin)
        handler = globals()[f"_cmd_{args.command}"]
        return handler(args)
    except _user_errors() as exc:
        print(f"kdlang: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kdlang: interrupted", file=sys.stderr)
        return 130


def _enable_plugins(modules) -> None:
    from kdlang import plugins

    try:
        plugins.enable(modules)
    except plugins.PluginLoadError as exc:
        raise UsageError(str(exc)) from None


def _user_errors() -> tuple:
    """The exceptions whose message is the whole answer (one line, with the fix): exit 2, no traceback.
    Evaluated only when an exception is being handled, so torch is imported only if it already was."""
    from kdlang.syntax.loader import UnreadableRecipe

    errors = [UsageError, UnreadableRecipe]
    distributed = sys.modules.get("kdlang.runtime.distributed")
    if distributed is not None:
        errors.append(distributed.LaunchError)
    return tuple(errors)


def _checked(path: str, *, shapes: bool = True):
    """The check of `check` and `render`: neither runs the IR, so the IR's diagram is not drawn
    (`render` draws from the checked graph)."""
    from kdlang.check import check_path
    from kdlang.syntax.loader import UnreadableRecipe

    try:
        return check_path(path, skip=("diagram",) if shapes else ("diagram", "shapes"))
    except UnreadableRecipe as exc:
        raise UsageError(str(exc)) from None


def _print_diagnostics(checked, quiet=False) -> None:
    color = terminal.use_color(sys.stderr)
    for d in checked.diagnostics:
        if (quiet or terminal.quiet()) and d.severity != "error":
            continue
        print(d.format(checked.sources, color=color), file=sys.stderr)


def _cmd_check(args) -> int:
    """Check every file given, even after a bad one; the worst outcome sets the exit code."""
    import time

    status = EXIT_OK
    for path in args.recipes:
        started = time.perf_counter()
        try:
            checked = _checked(path, shapes=not args.no_shapes)
        except UsageError as exc:
            print(f"kdlang: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        _print_diagnostics(checked)
        if terminal.verbose():
            passes = "without the shape pass" if args.no_shapes else "shapes inferred"
            print(f"{path}: checked in {time.perf_counter() - started:.2f} s ({passes})", file=sys.stderr)
        if checked.errors:
            status = max(status, EXIT_RECIPE)
            print(f"{path}: {len(checked.errors)} error(s)", file=sys.stderr)
        else:
            warnings = len(checked.diagnostics)
            shown = f" ({warnings} warning(s))" if warnings and not terminal.quiet() else ""
            print(f"{path}: ok{_fragment_note(checked)}{shown}")
    return status


def _fragment_note(checked) -> str:
    """` (fragment)`, with the names it leaves to the recipes that use it, for a `kdlang 1 fragment` file."""
    if checked.program is None or not checked.program.fragment:
        return ""
    external = sorted(checked.graph.resolution.external) if checked.graph is not None else []
    if not external:
        return " (fragment)"
    shown = ", ".join(external[:6]) + (", ..." if len(external) > 6 else "")
    return f" (fragment; reads {shown} from the recipe that uses it)"


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
    """Format every file given, even after a bad one; the worst outcome sets the exit code."""
    status = EXIT_OK
    for name in args.files:
        try:
            status = max(status, _fmt_one(name, args.check))
        except UsageError as exc:
            print(f"kdlang: {exc}", file=sys.stderr)
            status = EXIT_USAGE
    return status


def _fmt_one(name: str, check_only: bool) -> int:
    from kdlang.diagnostics import SourceMap
    from kdlang.syntax.errors import SyntaxProblem
    from kdlang.syntax.formatter import format_text

    text = _read_stdin() if name == "-" else _read(name)
    try:
        pretty = format_text(text, "<stdin>" if name == "-" else name)
    except SyntaxProblem as problem:
        print(problem.diagnostic.format(SourceMap({problem.diagnostic.span.file: text}),
                                        color=terminal.use_color(sys.stderr)), file=sys.stderr)
        return EXIT_RECIPE
    if name == "-":
        sys.stdout.write(pretty)
    elif pretty == text:
        if terminal.verbose():
            print(f"{name}: unchanged")
    elif check_only:
        print(f"{name}: would reformat")
        return EXIT_RECIPE
    else:
        _replace_atomically(Path(name), pretty)
        print(f"{name}: formatted")
    return EXIT_OK


def _read(name: str) -> str:
    from kdlang.syntax.loader import UnreadableRecipe, read_recipe_file

    try:
        return read_recipe_file(name)
    except UnreadableRecipe as exc:
        raise UsageError(str(exc)) from None


def _read_stdin() -> str:
    from kdlang.syntax.loader import UnreadableRecipe, read_recipe_stream

    try:
        return read_recipe_stream(sys.stdin.buffer, "<stdin>")
    except UnreadableRecipe as exc:
        raise UsageError(str(exc)) from None


def _replace_atomically(path: Path, text: str) -> None:
    """Write `text` over `path` so that a crash or a full disk leaves either the old file or the new
    one, never a truncated recipe (see `kdlang.durable`). A link is followed, so the link stays a
    link, and the file keeps its permission bits."""
    from kdlang import durable

    target = Path(os.path.realpath(path))
    try:
        durable.write_bytes(target, text.encode("utf-8"), mode=stat.S_IMODE(os.stat(target).st_mode))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}; the file is unchanged") from None


def _cmd_taps(args) -> int:
    from kdlang.library import models

    if args.list or not args.model:
        for name in models.names():
            print(f"zoo.{name}")
        for name in models.plugin_names():
            print(f"{name}  ({models.info(name).family})")
        print("tv.NAME for any torchvision classification model (e.g. tv.resnet18)")
        return EXIT_OK
    from kdlang.commands.taps import print_taps

    return print_taps(args.model, args.input, args.classes, UsageError)


def _cmd_compile(args) -> int:
    from kdlang.commands.compile import run_compile, run_launched

    _refuse_fragment(args.recipe, _read(args.recipe))  # one line, before torch loads
    if args.run or args.smoke:
        from kdlang.runtime import distributed

        distributed.from_env()  # a stray WORLD_SIZE: refused now, not after checking the recipe
    if args.nproc is not None:
        return run_launched(args, _without_nproc(args.argv), UsageError)
    return run_compile(args, UsageError)


def _refuse_fragment(path: str, text: str) -> None:
    """A `kdlang 1 fragment` file declares parts of recipes; there is nothing in it to compile."""
    from kdlang.syntax.errors import SyntaxProblem
    from kdlang.syntax.parser import parse

    try:
        version = parse(text, path).version
    except SyntaxProblem:
        return  # compiling reports it, with the source line
    if version is not None and version.fragment:
        raise UsageError(f"{path} is a fragment (`kdlang {version.number} fragment`): compile a recipe that uses it "
                         f"(`kdlang check {path}` checks the fragment alone)")


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line a worker runs: this one, less `--nproc N` / `--nproc=N`."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--nproc":
            skip = True
        elif not word.startswith("--nproc="):
            out.append(word)
    if _parser().parse_args(out).nproc is not None:  # an abbreviation such as --npr 2
        raise UsageError("write --nproc in full (the workers must not start workers of their own)")
    return out


def _cmd_completion(args) -> int:
    """A completion script for `args.shell`, made by shtab from this very parser (so it never lags)."""
    try:
        import shtab
    except ImportError:
        raise UsageError("shell completion needs the shtab package: pip install shtab") from None
    for action in _all_actions(args.parser):  # file and folder arguments complete paths
        if action.metavar in ("RECIPE", "FILE"):
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.metavar in ("RUN_DIR", "DIR"):
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    print(shtab.complete(args.parser, shell=args.shell))
    return EXIT_OK


def _all_actions(parser: argparse.ArgumentParser):
    """Every argument of `parser` and of its commands."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                yield from _all_actions(command)


def _cmd_report(args) -> int:
    from kdlang.commands.report import run_report

    return run_report(args.run_dirs, args.output, UsageError)


def _cmd_lsp(args) -> int:
    """Serve editors until they disconnect; needs the `lsp` extra (pygls, lsprotocol)."""
    try:
        from kdlang.lsp.checks import Settings
        from kdlang.lsp.server import serve
    except ModuleNotFoundError as exc:
        if exc.name not in ("pygls", "lsprotocol"):
            raise
        raise UsageError(f"the language server needs {exc.name}: pip install 'kdlang[lsp]'") from None
    serve(Settings(check_delay=args.check_delay, shape_delay=args.shape_delay, shapes=not args.no_shapes))
    return EXIT_OK


def _cmd_export(args) -> int:
    from kdlang.commands.export import run_export

    return run_export(args.run_dir, args.format, args.output, args.input, UsageError)


def _cmd_sweep(args) -> int:
    from kdlang.commands.sweep import run_sweep

    return run_sweep(args, UsageError)


def _cmd_table(args) -> int:
    from kdlang.commands.table import run_table

    return run_table(args, UsageError)


if __name__ == "__main__":
    sys.exit(main())
