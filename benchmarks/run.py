"""Every benchmark of issue 11, one after the other, each writing its section of docs/performance.md.

One command for the whole performance picture on this machine: step time against hand-written
PyTorch and torchdistill, where its time goes phase by phase, the runtime choices (channels_last, torch.compile, CPU bf16, the
truncated teacher), data-parallel scaling, check + load, the language server's latency, and the
front end (imports, cold check, linearity to 5,000 declarations). Each benchmark is a script of
its own (see benchmarks/README.md), run here in a fresh process so none warms another's caches.

    .venv/bin/python benchmarks/run.py              # everything: ~45 min on 2 idle cores
    .venv/bin/python benchmarks/run.py --quick      # fewer repeats: ~15 min
    .venv/bin/python benchmarks/run.py --only step,ddp --no-write
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (script, arguments for a full run, arguments for --quick)
BENCHMARKS = {
    "step": ("step.py", [], ["-n", "8", "--warmup", "2", "--threads", "2"]),
    "runtime_options": ("runtime_options.py", [], ["-n", "6"]),
    "profile_step": ("profile_step.py", [], ["-n", "4"]),
    "ddp": ("ddp.py", [], ["-r", "1", "--steps", "12"]),
    "load_once": ("load_once.py", ["-n", "7"], ["-n", "3"]),
    "lsp": ("lsp.py", [], ["-n", "8"]),
    "frontend": ("frontend.py", ["--skip", "shipped"], ["--skip", "shipped", "-n", "3", "--import-repeats", "2",
                                                        "--sizes", "500,1000,2000,5000", "--shape-sizes", "500"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier figures)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    failed, began = [], time.time()
    for name in chosen:
        script, full, quick = BENCHMARKS[name]
        command = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        if args.no_write:
            command.append("--no-write")
        print(f"\n=== {name}: {' '.join(command[1:])}  (load average {os.getloadavg()[0]:.1f})", flush=True)
        started = time.time()
        status = subprocess.run(command).returncode
        print(f"=== {name}: exit {status} after {(time.time() - started) / 60:.1f} min", flush=True)
        if status:
            failed.append(name)
    print(f"\n{len(chosen) - len(failed)} of {len(chosen)} benchmarks ran in {(time.time() - began) / 60:.1f} min"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
