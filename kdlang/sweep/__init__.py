"""Sweeps and tables: many runs from one command, and the table they make.

- `spec`: the sweep file (TOML) and the command line, merged;
- `plan`: every run, named by what varies (recipe, grid values, seed);
- `dependencies`: a run waits for the runs whose checkpoints it loads;
- `record`: `OUT/sweep.json`, the runs' states and errors, written atomically;
- `launch`: where runs execute (local processes, Ray, Slurm through submitit);
- `runner`: skip the finished, resume the interrupted, start the ready;
- `results`, `table`, `render`: a run's selected metric and published number, rows x columns of
  mean ± std with paired differences, as Markdown, LaTeX or HTML.
"""
