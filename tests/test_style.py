"""The repository keeps one style: pyink with the config in pyproject.toml (2-space)."""

import shutil
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.skipif(shutil.which("pyink") is None, reason="pyink is not installed")
def test_code_is_formatted():
  proc = subprocess.run(
      [sys.executable, "-m", "pyink", "--check", "--diff", "."],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert proc.returncode == 0, "run `pyink .`:\n" + proc.stdout[-3000:] + proc.stderr[-2000:]
