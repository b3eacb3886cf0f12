"""The README's demo command, in a fresh virtual environment, as a new user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest

from alpha_models.demo_data import expected
from alpha_models.embedded import EmbeddedStack
from tests.stack import ROOT


@pytest.mark.slow
def test_readme_demo_command_in_a_fresh_venv(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/demo.sh" in readme  # the command documented is the one tested
    state = Path(tempfile.mkdtemp(prefix="alpha-demo-"))
    state.chmod(0o755)  # reachable by the user PostgreSQL runs as when the tests are root
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "REDIS_", "ALPHA_"))
    }
    env.update(ALPHA_VENV=str(tmp_path / "venv"), PYTHON=sys.executable)
    try:
        done = subprocess.run(
            ["bash", "scripts/demo.sh", "--state-dir", str(state), "--out", str(tmp_path / "out")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        table = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if (
                parts
                and parts[0] in {"shortseller_001", "lxalgo_001", "momentum_001"}
                and len(parts) == 6
            ):
                table[parts[0]] = parts
        for bot, figures in expected().items():
            row = table[bot]
            assert int(row[1]) == figures.round_trips, (bot, row)
            assert (int(row[2]), int(row[3])) == (figures.wins, figures.losses), (bot, row)
            assert Decimal(row[5]) == figures.net_pnl, (bot, row)
        open_positions = {
            (parts[0], parts[1])
            for parts in (
                line.split() for line in done.stdout.split("Open positions", 1)[1].splitlines()
            )
            if len(parts) == 5 and parts[0] in table
        }
        assert open_positions == {
            (bot, symbol) for bot, f in expected().items() for symbol in f.open_symbols
        }
        assert "demo finished in" in done.stdout  # its duration is printed, not asserted
    finally:
        EmbeddedStack(state / "stack").down()
        shutil.rmtree(state, ignore_errors=True)
