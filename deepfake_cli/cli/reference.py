"""Generate docs/cli.md (from the Typer app) and docs/config.md (from the config
dataclasses), so neither reference can drift.

``python -m deepfake_cli.cli.reference`` rewrites both; a test fails when a
committed file differs from what this produces.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Iterator

import typer

HEADER = """# CLI reference

Generated from the Typer app by `python -m deepfake_cli.cli.reference`; do not edit by hand
(a test fails when this file is stale).
"""


def _walk(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name in sorted(getattr(command, "commands", {}) or {}):
        sub = command.commands[name]
        if not getattr(sub, "hidden", False):
            yield from _walk(sub, path + [name])


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(param: Any) -> str:
    default = param.default
    if isinstance(getattr(param, "show_default", None), str):  # the configuration's default (cli/help.py)
        return f"`{param.show_default}`"
    if getattr(param, "is_flag", False) or default in (None, (), [], False) or callable(default):
        return ""
    return f"`{default}`"


def _param_row(param: Any) -> str:
    opts = list(param.opts) + list(getattr(param, "secondary_opts", []) or [])
    if param.param_type_name == "argument":
        names = f"`{param.name.upper()}`" + (" ..." if param.nargs == -1 else "")
    else:
        names = ", ".join(f"`{o}`" for o in opts)
    required = "yes" if param.required else ""
    env = f"`{param.envvar}`" if isinstance(getattr(param, "envvar", None), str) else ""
    return f"| {names} | {_cell(getattr(param, 'help', '') or '')} | {_default(param)} | {env} | {required} |"


def _examples_as_code(help_text: str) -> str:
    """An ``Examples:`` paragraph of the help (cli/help.py) as a fenced shell block."""
    out = []
    for paragraph in help_text.split("\n\n"):
        head, _, rest = paragraph.partition("\n")
        if head.strip() in ("Examples:", "Example:") and rest:
            lines = "\n".join(line.strip() for line in rest.splitlines())
            paragraph = f"{head.strip()}\n\n```bash\n{lines}\n```"
        out.append(paragraph)
    return "\n\n".join(out)


def cli_reference_markdown(app: typer.Typer | None = None) -> str:
    if app is None:
        from deepfake_cli.cli.app import app as main_app

        app = main_app
    root = typer.main.get_command(app)
    parts = [HEADER]
    for path, command in _walk(root, ["dfdetect"]):
        title = " ".join(path)
        parts.append(f"\n## `{title}`\n")
        help_text = inspect.cleandoc(command.help or "")
        if help_text:
            parts.append(_examples_as_code(help_text) + "\n")
        params = [p for p in command.params if not getattr(p, "hidden", False) and p.name not in ("install_completion", "show_completion")]
        if params:  # a group's own options too (the root's --version, -q)
            parts.append("\n| argument / option | help | default | environment | required |\n|---|---|---|---|---|")
            parts.extend(_param_row(p) for p in params)
            parts.append("")
        if getattr(command, "commands", None):
            subs = [n for n in sorted(command.commands) if not command.commands[n].hidden]
            parts.append("\nSubcommands: " + ", ".join(f"`{n}`" for n in subs) + "\n")
        if command.epilog:
            parts.append("\n" + inspect.cleandoc(command.epilog) + "\n")
    return "\n".join(parts).rstrip() + "\n"


CONFIG_HEADER = """# Configuration reference

Generated from `deepfake_cli/config.py` by `python -m deepfake_cli.cli.reference`; do not
edit by hand (a test fails when this file is stale).

Every command resolves one configuration. Precedence, lowest first: these defaults, a
`--config file.toml` (or `.yaml`), environment variables `DFDETECT_<SECTION>_<KEY>`, then
command-line options. Unknown keys and values of the wrong type are errors naming the key.
`dfdetect config show` prints the resolved configuration as a valid TOML config file.
"""


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    return text.replace("<class '", "").replace("'>", "")


def config_reference_markdown() -> str:
    import dataclasses
    import typing

    from deepfake_cli.config import SECTIONS

    parts = [CONFIG_HEADER]
    for section, cls in SECTIONS.items():
        parts.append(f"\n## `[{section}]`\n")
        doc = inspect.cleandoc(cls.__doc__ or "")
        if doc and not doc.startswith(cls.__name__ + "("):
            parts.append(doc + "\n")
        hints = typing.get_type_hints(cls)
        parts.append("\n| key | type | default | environment variable |\n|---|---|---|---|")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            shown = "unset" if default is None else f"`{default!r}`"
            env = f"`DFDETECT_{section.upper()}_{f.name.upper()}`"
            parts.append(f"| `{f.name}` | `{_cell(_type_name(hints[f.name]))}` | {shown} | {env} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


REFERENCES = {"cli.md": cli_reference_markdown, "config.md": config_reference_markdown}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m deepfake_cli.cli.reference",
        description="Write docs/cli.md and docs/config.md, generated from the Typer app and the config.",
    )
    parser.add_argument("out_dir", nargs="?", type=Path, default=Path(__file__).resolve().parents[2] / "docs",
                        help="folder to write them to (default: the repository's docs/)")
    out_dir = parser.parse_args(sys.argv[1:] if argv is None else argv).out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, render in REFERENCES.items():
        (out_dir / name).write_text(render(), encoding="utf-8")
        print(f"wrote {out_dir / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
