"""The ``dfdetect`` entry point; each subcommand lives in its own module."""

from __future__ import annotations

from typing import Optional

import typer

from deepfake_cli import __version__
from deepfake_cli.cli import config_cmd, models_cmd, predict_cmd
from deepfake_cli.cli import video_cmd
from deepfake_cli.cli import serve_cmd
from deepfake_cli.cli import extract_cmd
from deepfake_cli.cli import gradcam_cmd
from deepfake_cli.cli import train_cmd, evaluate_cmd
from deepfake_cli.cli.common import set_quiet, stop_cleanly_on_sigterm

QUIET_FLAGS = ("-q", "--quiet")


def hoist_quiet(args: list[str]) -> list[str]:
    """``-q``/``--quiet`` given after the subcommand (``dfdetect predict x -q``) moved before
    it, where the root option is parsed; anything after ``--`` is left alone."""
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a not in QUIET_FLAGS]
    if len(head) == end:
        return list(args)
    return ["--quiet", *head, *args[end:]]


class RootGroup(typer.core.TyperGroup):
    """dfdetect's root command: ``-q`` is accepted anywhere on the command line, and every
    command's help is polished for reading (cli/help.py)."""

    def __init__(self, *args, **kwargs):  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        from deepfake_cli.cli.help import polish

        polish(self)

    def parse_args(self, ctx, args):  # noqa: ANN001 (click's signature)
        args = hoist_quiet(list(args))
        for param in self.params:  # Typer adds its completion options after __init__
            if param.name in ("install_completion", "show_completion") and param.metavar is None:
                param.metavar = ""
        if len(args) < 3 or "-h" in args or "--help" in args:  # help may be printed
            from deepfake_cli.cli.help import install_folding

            install_folding()
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="dfdetect",
    cls=RootGroup,
    help="Tell real faces from deepfakes in photos, folders and videos; train, evaluate, explain and serve detectors.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dfdetect {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(
        None, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q",
        help="Only errors on stderr: no progress, notes or summaries (as runtime.log_level = \"error\"); stdout is unchanged. Also accepted after the subcommand.",
    ),
) -> None:
    """dfdetect: deepfake detection for photos, folders and videos."""
    set_quiet(quiet)
    stop_cleanly_on_sigterm()


predict_cmd.register(app)
video_cmd.register(app)
app.add_typer(models_cmd.app, name="models")
app.add_typer(config_cmd.app, name="config")
serve_cmd.register(app)
extract_cmd.register(app)
gradcam_cmd.register(app)
train_cmd.register(app)
evaluate_cmd.register(app)


def main() -> None:
    app()
