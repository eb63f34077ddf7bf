"""The comparison table, `python -m experiments.reproduce` (its flags and the whole
command: `__main__`); `reproduce(...)` runs it from Python.

Modules, in the order a table is made: `plan` (the runs, their configs and workdirs, the
--override fields, the ablations the methods' config files declare), `runner` (each
dataset loaded once, the progress line, training or reusing a run, the baselines),
`table` (the rows, mean ± std, results.md, the precision-recall plots), `amend`
(merging this command's rows into an earlier table) and `pipeline` (all of it, in
order: `reproduce`).
"""

from .pipeline import reproduce

__all__ = ["reproduce"]
