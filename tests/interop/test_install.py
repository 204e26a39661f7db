"""``pip install .`` gives a working ``pobox`` command (docs/deployment.md, README).

The project is installed, as a user would, from a copy of the source tree into a directory of
its own; its ``pobox`` console script is then run with that directory first on the path, so the
installed package (not this checkout's editable one) answers. The dependencies come from the
test environment: what is checked is pobox's own packaging (modules, entry point, data).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.interop, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_pip_install_gives_a_pobox_command(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "data", "*.pyc", "__pycache__", ".*_cache"),
    )
    target = tmp_path / "installed"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    script = target / "bin" / "pobox"
    assert script.is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import pobox; print(pobox.__file__)"],
        capture_output=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert where.stdout.decode().startswith(str(target))  # the installed copy, not this one
    data = tmp_path / "data"
    init = subprocess.run(
        [sys.executable, str(script), "--data", str(data), "init"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert init.returncode == 0, init.stderr.decode(errors="replace")
    added = subprocess.run(
        [
            sys.executable,
            str(script),
            "--data",
            str(data),
            "user",
            "add",
            "new@localhost",
            "--password-stdin",
        ],
        input=b"secret\n",
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert added.returncode == 0, added.stderr.decode(errors="replace")
    listed = subprocess.run(
        [sys.executable, str(script), "--data", str(data), "user", "list"],
        capture_output=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert b"new@localhost" in listed.stdout
