"""The README and docs/ pages stay true: their ```python blocks run as written, and so do
the ```bash blocks of docs/ (command-line walk-throughs; the README's are the install and
test commands that CI runs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SHELL = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    """Run every python block of one page, in order, in one namespace, in a scratch folder."""
    namespace: dict = {"__name__": f"doc_{page.stem}"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for i, code in enumerate(python_blocks(page)):
            try:
                exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
            except Exception as exc:  # name the page and block in the failure
                raise AssertionError(f"{page.name} block {i} failed: {exc!r}") from exc
    finally:
        os.chdir(cwd)


DOC_SHELL = [p for p in sorted((ROOT / "docs").glob("*.md")) if SHELL.findall(p.read_text())]


@pytest.mark.parametrize("page", DOC_SHELL, ids=lambda p: p.name)
def test_page_commands_run(page: Path, tmp_path: Path) -> None:
    """Run every bash block of one docs page, in order, in a scratch folder (stop at the
    first failing command), with this interpreter's ``twin`` and ``python3`` first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    for i, script in enumerate(SHELL.findall(page.read_text())):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{page.name} bash block {i} failed:\n{done.stderr[-3000:]}"


def test_readme_names_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = (
        'python3 -m pip install torch==2.13.0 && python3 -m pip install -e ".[dev]" && twin demo'
    )
    assert install in readme and install in ci
    assert "python3 -m pytest" in readme and "python3 -m pytest" in ci
