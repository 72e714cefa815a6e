"""``dfdetect models``: the architecture registry and the trained models at hand."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from deepfake_cli.cli.common import handle_errors, stderr

app = typer.Typer(help="List, import and export architectures and trained models.", no_args_is_help=True)
import_app = typer.Typer(
    help="Convert published or older weights into a dfdetect checkpoint (kept in your models folder by default).",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")


@app.command("list")
def list_cmd(
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Registered architectures (params, input size, pretrained source) and shipped/trained models."""
    from deepfake_cli.models.catalog import architectures, trained_models
    from deepfake_cli.output import dumps

    with handle_errors():
        archs = architectures()
        trained = trained_models()
        if json_:
            typer.echo(dumps({"architectures": archs, "models": trained}, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        from deepfake_cli.output import breakable

        console = Console()
        table = Table(title="Architectures")
        for col in ("name", "params", "input", "grad-cam layer", "pretrained"):
            table.add_column(col, overflow="fold")
        for a in archs:
            table.add_row(
                a["name"], f"{a['params']:,}", f"{a['input_size']}x{a['input_size']}", a["gradcam_layer"],
                breakable(a["pretrained_source"] or "-"),
            )
        console.print(table)
        table = Table(title="Trained models")
        for col in ("name", "arch", "labels", "threshold", "default", "path"):
            table.add_column(col, overflow="fold")
        for m in trained:
            table.add_row(m["name"], m["arch"], ",".join(m["labels"]), f"{m['threshold']:.3f}", "yes" if m["default"] else "",
                          breakable(m["path"]))
        if not trained:
            table.caption = "none installed: train one with 'dfdetect train' or import one with 'dfdetect models import'"
        console.print(table)


@app.command("info")
def info_cmd(
    name: Optional[str] = typer.Argument(None, help="Shipped/kept model name or checkpoint path (default: the default model)."),
    json_: bool = typer.Option(False, "--json", help="Print the checkpoint's description as JSON instead of the model card."),
) -> None:
    """Print a model's card: a short summary first (what it is, validation figures,
    limitations), then the full card (data, recipe, metrics); or --json, its checkpoint
    description. Rendered on a terminal, raw Markdown in a pipe or file.
    """
    from deepfake_cli.models.catalog import card_summary, model_info
    from deepfake_cli.output import dumps

    with handle_errors():
        info = model_info(name)
        if json_:
            typer.echo(dumps(info, indent=2))
        elif info["card_text"] is not None:
            text = card_summary(info) + "\n---\n\n" + info["card_text"].rstrip() + "\n"
            if sys.stdout.isatty():
                print_markdown(text)
            else:
                typer.echo(text.rstrip())
        else:
            stderr.print(f"[yellow]{info['name']} has no model card; its checkpoint says:[/]")
            typer.echo(dumps({k: v for k, v in info.items() if k != "card_text"}, indent=2))


def print_markdown(text: str, console: Any = None) -> None:
    """``text`` rendered by Rich's Markdown (headings, tables, paragraphs re-wrapped to the terminal's width)."""
    from rich.console import Console
    from rich.markdown import Markdown

    (console or Console()).print(Markdown(text))


OutOption = typer.Option(
    None, "--out", "-o", help="Checkpoint to write (default: NAME.pt in your models folder, listed by 'models list')."
)
NameOption = typer.Option(None, "--name", help="Model name in your models folder (default: from the file name).")
ForceOption = typer.Option(False, "--force", "-f", help="Overwrite an existing file.")
ImportJsonOption = typer.Option(False, "--json", help="Print the imported checkpoint's description as JSON.")


def _import_destination(source: Path, out: Optional[Path], name: Optional[str], force: bool) -> Path:
    from deepfake_cli.errors import UsageError
    from deepfake_cli.models.store import user_models_dir

    if out is not None and name is not None:
        raise UsageError("give --out or --name, not both")
    if out is None:
        name = name or re.sub(r"[^a-z0-9_.-]+", "_", source.stem.lower()).strip("_.") or "model"
        out = user_models_dir() / f"{name}.pt"
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    return out


def _write_import(checkpoint: dict[str, Any], destination: Path, json_: bool) -> None:
    _write_checkpoint(checkpoint, destination, json_, f"imported {checkpoint['provenance'].get('source_file')} as {checkpoint['arch']}")


def _write_checkpoint(checkpoint: dict[str, Any], destination: Path, json_: bool, what: str) -> None:
    from deepfake_cli.models.checkpoint import save_checkpoint
    from deepfake_cli.models.store import user_models_dir
    from deepfake_cli.output import dumps

    path = save_checkpoint(checkpoint, destination)
    in_store = path.resolve().parent == user_models_dir().resolve()
    reference = path.stem if in_store else str(path)
    summary = {
        "name": path.stem,
        "path": str(path),
        "in_models_dir": in_store,
        "arch": checkpoint["arch"],
        "labels": checkpoint["labels"],
        "threshold": checkpoint["threshold"],
        "preprocessing": checkpoint["preprocessing"],
        "metrics": checkpoint["metrics"],
        "provenance": checkpoint["provenance"],
    }
    if json_:
        typer.echo(dumps(summary, indent=2))
        return
    typer.echo(f"{what} -> {path}")
    stderr.print(f"use it with: dfdetect predict IMAGE -m {reference}")


@import_app.command("mesonet")
def import_mesonet_cmd(
    path: Path = typer.Argument(..., help="Published MesoNet Keras weights, e.g. Meso4_DF.h5 (DariusAf/MesoNet).", dir_okay=False),
    arch: Optional[str] = typer.Option(
        None, "--arch", help="mesonet4 or mesoinception4 (default: recognised from the file)."
    ),
    out: Optional[Path] = OutOption,
    name: Optional[str] = NameOption,
    force: bool = ForceOption,
    json_: bool = ImportJsonOption,
) -> None:
    """MesoNet .h5 (Keras, read with h5py; no TensorFlow) -> mesonet4/mesoinception4 checkpoint.

    The published sigmoid output is P(real); the checkpoint reproduces it as
    labels (real, fake), threshold 0.5, input 256x256 in [0, 1]. MesoNet was
    trained on face crops: use --no-detect on crops; on photos faces are found
    and cropped with margin 0.3, square.
    """
    with handle_errors():
        from deepfake_cli.models.import_keras import import_mesonet

        destination = _import_destination(path, out, name, force)
        _write_import(import_mesonet(path, arch), destination, json_)


def _seed_command(source: str, arch: str):
    def command(
        path: Path = typer.Argument(..., help="The first report's checkpoint (.pth).", dir_okay=False),
        out: Optional[Path] = OutOption,
        name: Optional[str] = NameOption,
        force: bool = ForceOption,
        json_: bool = ImportJsonOption,
    ) -> None:
        with handle_errors():
            from deepfake_cli.models.import_seed import import_seed

            destination = _import_destination(path, out, name, force)
            _write_import(import_seed(path, source), destination, json_)

    command.__doc__ = (
        f"First report's {arch} checkpoint ({{model_state_dict, best_val_acc, epoch}}; class 0 real, 1 fake) "
        f"-> {arch} checkpoint.\n\nLoaded with weights_only=True: a file that could run code is refused."
    )
    return command


for _source, _arch in (("seed-resnet18", "resnet18"), ("seed-cnn", "cnn"), ("seed-cnn-small", "cnn_small")):
    import_app.command(_source)(_seed_command(_source, _arch))


@app.command("export")
def export_cmd(
    checkpoint: str = typer.Argument(..., help="Checkpoint path or model name."),
    format_: str = typer.Option(..., "--format", "-F", help="onnx (opset >= 17, dynamic batch) or torchscript."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="dynamic: INT8 weights for CPU/edge."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="File to write (default: ./NAME[.int8].onnx or .torchscript; a run's exp3/best.pt is exp3_best)."
    ),
    verify_on: Optional[List[str]] = typer.Option(
        None, "--verify-on", help="Face crops (files, folders, globs) to compare the export with PyTorch on; "
        "default: seeded random images. Repeatable; at most 32 images are used.",
    ),
    tolerance: Optional[float] = typer.Option(
        None, "--tolerance", help="Max abs probability difference allowed (default 1e-4; INT8: report only)."
    ),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or newer)."),
    force: bool = ForceOption,
    json_: bool = typer.Option(False, "--json", help="Print the result and its verification as JSON."),
) -> None:
    """Export a checkpoint to ONNX or TorchScript and verify it against PyTorch (max abs diff).

    The exported graph takes the preprocessed float batch (NCHW, the
    checkpoint's size and normalisation) and returns logits; labels,
    preprocessing and threshold are stored in the file's metadata.
    """
    with handle_errors():
        from deepfake_cli.inference.export import export_checkpoint
        from deepfake_cli.models.store import resolve_model
        from deepfake_cli.output import dumps

        source = resolve_model(checkpoint)
        crops = _verification_crops(verify_on) if verify_on else None
        result = export_checkpoint(source, format_, out, quantize, crops=crops, tolerance=tolerance, opset=opset,
                                   force=force)
        if json_:
            typer.echo(dumps(result.to_dict(), indent=2))
            return
        v = result.verification
        typer.echo(
            f"wrote {result.path} ({result.format}{', INT8 dynamic' if result.quantize else ''}, "
            f"{result.size_bytes / 1e6:.2f} MB; checkpoint {(result.checkpoint_size_bytes or 0) / 1e6:.2f} MB)"
        )
        typer.echo(
            f"verified on {v.inputs} {v.input_kind}: max |diff| logits {v.max_abs_diff_logits:.2e}, "
            f"probabilities {v.max_abs_diff_probs:.2e}, same label {v.label_agreement:.0%}"
        )


@app.command("merge")
def merge_cmd(
    base: str = typer.Argument(..., help="The checkpoint fine-tuning started from (path or model name): weight 0."),
    tuned: str = typer.Argument(..., help="The checkpoint fine-tuned from it (path or model name): weight 1."),
    weight: float = typer.Option(0.5, "--weight", "-w", help="Where on the line from BASE (0) to TUNED (1)."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Size the merged model scores at (default: TUNED's)."),
    out: Optional[Path] = OutOption,
    name: Optional[str] = NameOption,
    force: bool = ForceOption,
    json_: bool = typer.Option(False, "--json", help="Print the merged checkpoint's description as JSON."),
) -> None:
    """Interpolate two checkpoints' weights (WiSE-FT): (1 - w) * BASE + w * TUNED.

    Both must be one architecture trained on one data split (a run started with
    'dfdetect train --init BASE'). The merged model takes TUNED's preprocessing and
    framing; its threshold is uncalibrated: calibrate it with 'dfdetect evaluate -m
    MERGED --data ... --threshold-from val' on the split both were validated on.
    """
    with handle_errors():
        from deepfake_cli.cli.common import escape
        from deepfake_cli.models.checkpoint import checkpoint_label
        from deepfake_cli.models.merge import merge_checkpoints
        from deepfake_cli.models.store import resolve_model

        base_path, tuned_path = resolve_model(base), resolve_model(tuned)
        # A run's ft224/best.pt at 0.7 -> ft224_best_w0p7 (a "." would read as the name's suffix).
        label = checkpoint_label(tuned_path).replace("/", "_")
        destination = _import_destination(Path(f"{label}_w{weight:g}".replace(".", "p")), out, name, force)
        merged = merge_checkpoints(base_path, tuned_path, weight, input_size=input_size)
        _write_checkpoint(merged, destination, json_, f"merged {base_path.name} and {tuned_path.name} at weight {weight:g}")
        stderr.print(f"[yellow]note:[/] its threshold is uncalibrated: run 'dfdetect evaluate -m {escape(str(destination))} "
                     "--data ... --threshold-from val' before trusting its verdicts", soft_wrap=True)


VERIFY_MAX_IMAGES = 32


def _verification_crops(sources: List[str]) -> list:
    from itertools import islice

    from deepfake_cli.errors import NoInputsError
    from deepfake_cli.media.images import IMAGE_EXTENSIONS, load_image
    from deepfake_cli.media.sources import expand_sources

    paths = list(islice(expand_sources(sources, IMAGE_EXTENSIONS), VERIFY_MAX_IMAGES))
    if not paths:
        raise NoInputsError(f"--verify-on {' '.join(sources)}: no images found")
    return [load_image(p) for p in paths]
