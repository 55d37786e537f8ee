"""The conventions' "ruff and mypy clean", checked: both run on the code and fail the test with their output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUFF_PATHS = ("shared", "services", "schakel", "bench", "tests", "infra")
MYPY_PATHS = ("shared", "services", "schakel")


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a tool from this venv in the repository root (its configuration is in pyproject.toml)."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)


def test_ruff_finds_nothing_to_complain_about() -> None:
    result = run_tool("ruff", "check", "--no-fix", *RUFF_PATHS)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"


def test_mypy_finds_no_type_errors() -> None:
    result = run_tool("mypy", *MYPY_PATHS)
    assert result.returncode == 0, f"mypy found type errors:\n{result.stdout}{result.stderr}"
