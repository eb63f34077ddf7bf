"""One process of tests/test_multihost.py's job: `python -m experiments.train ARGS`, run in
this process, with a record of the files it writes under the workdir.

  python multihost_worker.py REPORT_JSON WORKDIR ARGS...

Python's audit events (`sys.addaudithook`) see every file that Python code opens for
writing, creates, renames or removes: config.json, metrics.jsonl, TensorBoard's event
files, results.json, the plots. What lies under checkpoints/ is left out: orbax writes
its array files from C++ and coordinates its processes itself. After training, REPORT_JSON
gets {"written": [paths relative to WORKDIR], "process_index", "process_count",
"device_count", "local_device_count", "rows": this process's row blocks of a 32-row
global batch}.
"""

import json
import os
import runpy
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
EVENTS = ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree")


def main():
  report_path, workdir, args = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3:]
  root, skipped = workdir + os.sep, os.path.join(workdir, "checkpoints") + os.sep
  written = set()

  def record(path):
    if isinstance(path, (str, bytes, os.PathLike)):
      path = os.path.abspath(os.fsdecode(path))
      if path.startswith(root) and not path.startswith(skipped):
        written.add(os.path.relpath(path, workdir))

  def hook(event, event_args):
    if event == "open":
      path, mode, flags = event_args
      if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & WRITE_FLAGS:
        record(path)
    elif event in EVENTS:
      for path in event_args[:2]:
        record(path)

  sys.addaudithook(hook)
  sys.argv = ["experiments/train.py", *args]
  try:
    runpy.run_module("experiments.train", run_name="__main__", alter_sys=True)
  except SystemExit as e:
    if e.code not in (None, 0):
      raise
  import jax  # pylint: disable=g-import-not-at-top
  from crossmodal_jax import parallel  # pylint: disable=g-import-not-at-top

  report = {
      "written": sorted(written),
      "process_index": jax.process_index(),
      "process_count": jax.process_count(),
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "rows": parallel.process_rows(parallel.create_mesh(), 32),
  }
  with open(report_path, "w") as f:
    json.dump(report, f)


if __name__ == "__main__":
  main()
