"""``dfdetect config``: show the resolved configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepfake_cli.cli.common import ConfigOption, build_config, handle_errors

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


@app.command("show")
def show(
    config: Optional[Path] = ConfigOption,
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of TOML."),
) -> None:
    """Print the resolved config: defaults < --config file < DFDETECT_<SECTION>_<KEY> environment."""
    from deepfake_cli.config import to_toml
    from deepfake_cli.output import dumps

    with handle_errors():
        cfg = build_config(config, {})
        typer.echo(dumps(cfg.to_dict(), indent=2) if json_ else to_toml(cfg))
