"""``dfdetect models``: the architecture registry and the trained models at hand."""

from __future__ import annotations

import typer

from deepfake_cli.cli.common import handle_errors

app = typer.Typer(help="List architectures and trained models.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Registered architectures (params, input size, pretrained source) and shipped/trained models."""
    from deepfake_cli.model_catalog import architectures, trained_models
    from deepfake_cli.output import dumps

    with handle_errors():
        archs = architectures()
        trained = trained_models()
        if json_:
            typer.echo(dumps({"architectures": archs, "models": trained}, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title="Architectures")
        for col in ("name", "params", "input", "grad-cam layer", "pretrained"):
            table.add_column(col, overflow="fold")
        for a in archs:
            table.add_row(
                a["name"], f"{a['params']:,}", f"{a['input_size']}x{a['input_size']}", a["gradcam_layer"],
                a["pretrained_source"] or "-",
            )
        console.print(table)
        table = Table(title="Trained models")
        for col in ("name", "arch", "labels", "threshold", "default", "path"):
            table.add_column(col, overflow="fold")
        for m in trained:
            table.add_row(m["name"], m["arch"], ",".join(m["labels"]), f"{m['threshold']:.3f}", "yes" if m["default"] else "", m["path"])
        if not trained:
            table.caption = "none installed: train one with 'dfdetect train' or import one with 'dfdetect models import'"
        console.print(table)
