"""The README stays true: its parameter table and its commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TEST_COMMAND = "./scripts/install-test-deps.sh && ./scripts/test.sh"


def test_config_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_reference.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    table = result.stdout.strip()
    text = README.read_text()
    begin = text.index("<!-- config-reference:begin -->")
    end = text.index("<!-- config-reference:end -->")
    shown = text[begin:end].split("\n", 1)[1].strip()
    assert shown == table, (
        "README's parameter table is stale: "
        "python scripts/config_reference.py --update README.md"
    )


def test_every_parameter_is_in_the_table() -> None:
    from roost.config import parameter_names

    text = README.read_text()
    for name in parameter_names():
        assert f"| `{name}` |" in text, name


def test_ci_runs_the_readme_test_command() -> None:
    assert f"\n{TEST_COMMAND}\n" in README.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    steps = [line for line in ci.splitlines() if line.startswith("./scripts/")]
    assert " && ".join(steps) == TEST_COMMAND


def test_install_command_is_one_line() -> None:
    assert "\npip install . && roost serve\n" in README.read_text()
