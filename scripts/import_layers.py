"""Check that no wing of ``deepfake_cli`` imports upward, and print the wing-level import graph.

    python scripts/import_layers.py          # the graph, then any violations; exit 1 if there are some

Layers, lowest first (a wing may import its own modules and those of lower layers; wings on
the same layer may not import each other):

    core (top-level modules) < media < faces < models < data | inference < training | cluster < serve < cli

Every import counts, also the ones inside functions (lazy imports). Only ``cli/`` may import typer.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "deepfake_cli"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# wing -> layer; "core" is every module at the package's top level
LAYERS: dict[str, int] = {
    "core": 0,
    "media": 1,
    "faces": 2,
    "models": 3,
    "data": 4,
    "inference": 4,
    "training": 5,
    "cluster": 5,  # Ray: runs inference and data work on other machines
    "serve": 6,
    "cli": 7,
}
TYPER_WINGS = {"cli"}


def wing_of(module: str) -> str:
    """``deepfake_cli.faces.detector`` -> ``faces``; ``deepfake_cli.config`` -> ``core``."""
    parts = module.split(".")
    if parts[1:] == ["__main__"]:  # ``python -m deepfake_cli``: the CLI's entry point
        return "cli"
    if len(parts) >= 2 and parts[1] in LAYERS and parts[1] != "core":
        return parts[1]
    return "core"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path).split(".")
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here if is_pkg else here[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == PACKAGE:  # from deepfake_cli import x: x may be a module
                found += [(node.lineno, f"{PACKAGE}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def check() -> tuple[dict[tuple[str, str], int], list[str]]:
    """The wing graph (edge -> count) and the violations, one line each."""
    graph: dict[tuple[str, str], int] = {}
    problems: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        src = wing_of(module_name(path))
        where = path.relative_to(ROOT.parent)
        for line, target in imports(path):
            top = target.split(".")[0]
            if top == "typer" and src not in TYPER_WINGS:
                problems.append(f"{where}:{line}: imports typer (only cli/ may)")
            if top != PACKAGE:
                continue
            if target in (PACKAGE, f"{PACKAGE}.__init__") or target == f"{PACKAGE}.__version__":
                continue
            dst = wing_of(target)
            if dst == src:
                continue
            graph[(src, dst)] = graph.get((src, dst), 0) + 1
            if LAYERS[dst] >= LAYERS[src]:
                problems.append(f"{where}:{line}: {src} imports {target} ({dst} is not below {src})")
    return graph, problems


def main() -> int:
    graph, problems = check()
    for wing in sorted(LAYERS, key=LAYERS.get):
        below = sorted({d for (s, d) in graph if s == wing}, key=LAYERS.get)
        print(f"{LAYERS[wing]} {wing:<10} -> {', '.join(below) or '-'}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
