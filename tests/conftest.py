"""Shared fixtures: a CLI runner and helpers for checking export results."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from timmx.cli.app import app


@pytest.fixture
def cli() -> Callable[..., object]:
    """Invoke ``timmx`` with string arguments; returns click's Result (stdout/stderr apart)."""
    runner = CliRunner()

    def invoke(*args: object):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def export_json(cli) -> Callable[..., dict]:
    """Run ``timmx export ... --json``, assert exit 0 and return the parsed result."""

    def run(*args: object) -> dict:
        result = cli("export", *args, "--json")
        assert result.exit_code == 0, f"export failed ({result.exit_code}): {result.stderr}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


def assert_passed(data: dict, *, max_abs: float | None = None) -> None:
    """Assert a result's verification ran, passed and (optionally) stayed under ``max_abs``."""
    verify = data["verify"]
    assert verify is not None, "verification did not run"
    assert verify["checked"], f"numerics were not checked: {verify['note']}"
    assert verify["passed"], f"verification failed: {verify}"
    if max_abs is not None:
        assert verify["max_abs_err"] <= max_abs, f"max abs err {verify['max_abs_err']} > {max_abs}"


def leftovers(folder: Path) -> list[str]:
    """Names of entries in ``folder`` (to check that failed exports left nothing behind)."""
    return sorted(p.name for p in folder.iterdir())
