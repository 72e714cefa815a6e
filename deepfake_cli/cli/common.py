"""What every command shares: exit codes, error mapping, config building, consoles."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console

from deepfake_cli import errors

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_FAKE = 3
EXIT_PARTIAL = 4

EXIT_CODES_HELP = (
    "Exit codes: 0 all inputs processed; 1 fatal error (no inputs found, model missing, "
    "nothing could be processed); 2 usage error; 3 with --fail-on-fake when any input is "
    "judged fake; 4 some inputs could not be processed (3 wins over 4)."
)

# Progress, logs and errors go to stderr; results alone go to stdout.
stderr = Console(stderr=True, highlight=False)

_USAGE_ERRORS = (errors.ConfigError, errors.UsageError)


def exit_code_for(exc: errors.DfdetectError) -> int:
    return EXIT_USAGE if isinstance(exc, _USAGE_ERRORS) else EXIT_FATAL


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Map the library's typed errors to one line on stderr and an exit code."""
    try:
        yield
    except errors.DfdetectError as exc:
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        stderr.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


def build_config(config_file: Optional[Path], overrides: dict[str, Any]):
    """Defaults < --config file < DFDETECT_* environment < these command-line overrides."""
    from deepfake_cli.config import load_config

    return load_config(config_file, overrides)


def prepare_runtime(cfg) -> "Any":
    """Threads and seed from the config; returns the torch device to use."""
    from deepfake_cli.runtime import configure_threads, resolve_device, seed_everything

    configure_threads(cfg.runtime.num_threads)
    seed_everything(cfg.runtime.seed)
    return resolve_device(cfg.runtime.device)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


ConfigOption = typer.Option(
    None, "--config", "-c", help="TOML or YAML config file (see 'dfdetect config show').", exists=False, dir_okay=False
)
DeviceOption = typer.Option(None, "--device", help="auto, cpu or cuda (default: auto).")
ModelOption = typer.Option(None, "--model", "-m", help="Checkpoint path or shipped model name (default: the shipped default model).")
JsonOption = typer.Option(False, "--json", help="Write a JSON array to stdout.")
JsonlOption = typer.Option(False, "--jsonl", help="Write JSON Lines (one record per line) to stdout.")
CsvOption = typer.Option(False, "--csv", help="Write CSV to stdout.")
