"""Packaging metadata that guards security properties."""

from __future__ import annotations

import re
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _floor(requirement: str) -> tuple[int, ...]:
    m = re.search(r">=\s*([0-9][0-9.]*)", requirement)
    assert m, requirement
    return tuple(int(p) for p in m.group(1).split(".") if p)


def test_torch_floor_excludes_weights_only_bypass():
    # CVE-2025-32434: torch.load(weights_only=True) can run code before 2.6.
    text = PYPROJECT.read_text(encoding="utf-8")
    reqs = re.findall(r'^\s*"(torch[<>=!~ ][^"]*)"', text, flags=re.M)
    assert reqs, "torch requirement not found in pyproject.toml"
    assert _floor(reqs[0]) >= (2, 6)
    assert "CVE-2025-32434" in text
