"""The Prometheus rules of the canary: promtool checks them and runs their unit tests (canary/rules_test.yml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CANARY = Path(__file__).resolve().parents[2] / "canary"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: `make bootstrap` installs Debian's prometheus package (as root)")
    return path


def test_rules_are_valid():
    run = subprocess.run([promtool(), "check", "rules", str(CANARY / "rules.yml")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rules_unit_tests_pass():
    run = subprocess.run([promtool(), "test", "rules", "rules_test.yml"], cwd=CANARY, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
