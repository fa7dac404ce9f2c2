"""README.md stays true: generated sections match the code, the quick start is what CI runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from snn_fusion_ros.docgen import render

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]


def test_readme_generated_sections_are_current():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert render(text) == text, "README.md is stale: run `python -m snn_fusion_ros.docgen`"


def test_readme_quick_start_is_the_two_make_commands_and_ci_runs_the_test_one():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("```", 2)[1]
    assert [line.split("#")[0].strip() for line in quick.strip().splitlines()[1:]] == ["make demo", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()
