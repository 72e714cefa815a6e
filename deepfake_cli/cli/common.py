"""What every command shares: exit codes, error mapping, config building, consoles."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console

from deepfake_cli import errors
from deepfake_cli.config import DEFAULT_FACE_MARGIN, Config
from deepfake_cli.output import OUTPUT_FORMATS

_DEFAULTS = Config()


def default_of(key: str) -> str:
    """A built-in default as help text shows it: ``default_of("train.epochs")`` -> ``"10"``.

    Help strings read their defaults from config.py (as cli/reference.py reads it for
    docs/config.md) instead of restating them; ``"face.margin_default"`` is the margin used
    when no model says otherwise.
    """
    if key == "face.margin_default":
        value: Any = DEFAULT_FACE_MARGIN
    else:
        section, name = key.split(".")
        value = getattr(getattr(_DEFAULTS, section), name)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if value and abs(value) < 1e-3:  # 1e-4, not 0.0001
            mantissa, exponent = f"{value:.0e}".split("e")
            return f"{mantissa}e{int(exponent)}"
        return f"{value:g}"
    return str(value)

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_FAKE = 3
EXIT_PARTIAL = 4
EXIT_SIGPIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader closed the pipe
EXIT_SIGTERM = 143  # 128 + SIGTERM: timeout(1), kill, a cancelled CI job

EXIT_CODES_HELP = (
    "Exit codes: 0 all inputs processed; 1 fatal error (no inputs found, model missing, "
    "nothing could be processed); 2 usage error; 3 with --fail-on-fake when any input is "
    "judged fake; 4 some inputs could not be processed (3 wins over 4)."
)
# gradcam explains scores rather than judging inputs: no --fail-on-fake, so no 3.
EXIT_CODES_HELP_NO_VERDICT = (
    "Exit codes: 0 all inputs processed; 1 fatal error (no inputs found, model missing, "
    "nothing could be processed); 2 usage error; 4 some inputs could not be processed."
)

# Progress, logs and errors go to stderr; results alone go to stdout.
# soft_wrap: messages stay one line each in logs and pipes (grep), never cut at 80 columns;
# on a terminal Rich wraps them at word boundaries instead of the terminal cutting words
# ("sampl|ed frames").
def _one_line_each() -> bool:
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return True


stderr = Console(stderr=True, highlight=False, soft_wrap=_one_line_each())
# Errors are printed even when stderr is quiet (-q, runtime.log_level = "error").
errors_out = Console(stderr=True, highlight=False, soft_wrap=_one_line_each())


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 input``, ``2 inputs``, ``0 errors`` (``many`` for irregular plurals)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def set_quiet(quiet: bool) -> None:
    """Only errors on stderr: no progress, notes or summaries (stdout is unchanged)."""
    stderr.quiet = quiet

# A bad --out (a folder given as a file, ...) is an option to change, like a bad value.
_USAGE_ERRORS = (errors.ConfigError, errors.UsageError, errors.OutputError)


def exit_code_for(exc: errors.DfdetectError) -> int:
    return EXIT_USAGE if isinstance(exc, _USAGE_ERRORS) else EXIT_FATAL


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the command unwinds as on Ctrl-C: partial
    output files are removed and background threads stopped, instead of the process
    vanishing with them in place."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def stop_cleanly_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` (``dfdetect serve`` installs uvicorn's own
    handlers while it runs)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Map the library's typed errors to one line on stderr and an exit code."""
    try:
        yield
    except errors.DfdetectError as exc:
        errors_out.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        errors_out.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except Terminated:
        errors_out.print("[yellow]terminated[/]")
        raise typer.Exit(EXIT_SIGTERM) from None
    except BrokenPipeError:
        # The reader of stdout went away (| head): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_SIGPIPE) from None
    except OSError as exc:
        # Disk full, no permission, a file gone mid-run: one line, not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        errors_out.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}")
        raise typer.Exit(EXIT_FATAL) from None


def note_no_match(pattern: str) -> None:
    """For ``expand_sources``: a glob that matched nothing, said on stderr."""
    stderr.print(f"[yellow]note:[/] no file matches {escape(pattern)}")


def note_source(message: str) -> None:
    """For ``expand_sources``: a pipe skipped in a folder, a folder with nothing to scan."""
    stderr.print(f"[yellow]note:[/] {escape(message)}")


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


def build_config(config_file: Optional[Path], overrides: dict[str, Any]):
    """Defaults < --config file < DFDETECT_* environment < these command-line overrides."""
    from deepfake_cli.config import load_config

    cfg = load_config(config_file, overrides)
    if cfg.runtime.log_level == "error":
        set_quiet(True)
    return cfg


def prepare_runtime(cfg) -> "Any":
    """Threads and seed from the config; returns the torch device to use."""
    from deepfake_cli.runtime import configure_threads, resolve_device, seed_everything

    configure_threads(cfg.runtime.num_threads)
    seed_everything(cfg.runtime.seed)
    return resolve_device(cfg.runtime.device)


def load_classifier(cfg) -> "Any":
    """The model of ``model.name`` (or the default one) on the configured device, announced on stderr."""
    from deepfake_cli.inference.classifier import FaceClassifier
    from deepfake_cli.models.store import resolve_model

    device = prepare_runtime(cfg)
    classifier = FaceClassifier.from_checkpoint(resolve_model(cfg.model.name), device=device)
    classifier.configure(cfg.predict)
    stderr.print(
        f"[dim]model {escape(classifier.name)} ({classifier.arch}), threshold {classifier.threshold:.3f}, "
        f"{'flip TTA, ' if classifier.tta == 'flip' else ''}"
        f"device {device}, face detection {'on' if cfg.face.detect else 'off'}[/]"
    )
    print_calibration_note(classifier)
    return classifier


def print_calibration_note(classifier: "Any") -> None:
    """Say on stderr when the scores' test-time views are not those the threshold was chosen with."""
    note = classifier.calibration_note()
    if note:
        stderr.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


def batch_counts(summary: "Any", noun: str) -> str:
    """The summary line of a batch: ``13 inputs: 8 fake, 5 real, 0 without a face, 0 errors``,
    with ``(3 borderline)`` after it when some verdicts are."""
    line = (
        f"{plural(summary.total, noun)}: {summary.fake} fake, {summary.real} real, "
        f"{summary.no_face} without a face, {plural(summary.errors, 'error')}"
    )
    if summary.borderline:
        line += f" ({summary.borderline} borderline)"
    return line


def running_counts(summary: "Any") -> str:
    """A batch's counts so far, for progress displays: ``4 fake, 3 real (1 borderline), 1 no face, 2 errors``
    (no face and errors only once there are some)."""
    counts = f"{summary.fake} fake, {summary.real} real"
    if summary.borderline:
        counts += f" ({summary.borderline} borderline)"
    if summary.no_face:
        counts += f", {summary.no_face} no face"
    if summary.errors:
        counts += f", {plural(summary.errors, 'error')}"
    return counts


def batch_exit_code(summary: "Any", fail_on_fake: bool) -> int:
    """The exit code of a batch from its ``PredictSummary`` counts (see EXIT_CODES_HELP)."""
    if summary.processed == 0:
        return EXIT_FATAL
    if fail_on_fake and summary.fake:
        return EXIT_FAKE
    if summary.errors:
        return EXIT_PARTIAL
    return EXIT_OK


ConfigOption = typer.Option(
    None, "--config", "-c", help="TOML or YAML config file (see 'dfdetect config show').", exists=False, dir_okay=False
)
DeviceOption = typer.Option(None, "--device", help=f"auto, cpu or cuda (default: {default_of('runtime.device')}).")
ModelOption = typer.Option(None, "--model", "-m", help="Checkpoint path or shipped model name (default: the shipped default model).")
# One output-format option; --json/--jsonl/--csv stay as its aliases.
FormatOption = typer.Option(
    None, "--format", "-f",
    help=f"Output format: {', '.join(OUTPUT_FORMATS)} (default: a table on a terminal, JSON Lines in a pipe).",
)
JsonOption = typer.Option(False, "--json", help="Write a JSON array (alias of --format json).")
JsonlOption = typer.Option(False, "--jsonl", help="Write JSON Lines, one record per line (alias of --format jsonl).")
CsvOption = typer.Option(False, "--csv", help="Write CSV (alias of --format csv).")

# The face pipeline's options, shared by every command that finds faces in images.
ThresholdOption = typer.Option(None, "--threshold", "-t", help="Decision threshold on p_fake (default: the model's calibrated one).")
BorderlineBandOption = typer.Option(
    None, "--borderline-band",
    help=f"Mark a verdict borderline (fake?/real?) when p_fake is within this of the threshold; exit codes ignore it (default {default_of('predict.borderline_band')}; 0: never).",
)
TtaOption = typer.Option(
    None, "--tta",
    help="Test-time views: flip also scores each face's mirror image and averages the two (twice the classifier's work); none scores it alone; auto: what the model's threshold was chosen with (default auto).",
)
NoDetectOption = typer.Option(False, "--no-detect", "--whole-image", help="Inputs are already face crops: skip face detection.")
MarginOption = typer.Option(None, "--margin", help="Face crop margin (default: the framing the model was trained on).")
MinFaceProbOption = typer.Option(None, "--min-face-prob", help="Minimum face detection probability.")
MinFaceSizeOption = typer.Option(None, "--min-face-size", help="Minimum face size in pixels.")
LargestFaceOption = typer.Option(False, "--largest-face", help="Only the largest face of each image.")
ThreadsOption = typer.Option(None, "--threads", help="CPU threads for inference.")

# Ray (dfdetect[ray]): the same inputs split across actors of a cluster, results in input order.
RayOption = typer.Option(False, "--ray", help="Run on a Ray cluster (needs dfdetect[ray]): inputs split across actors, each holding one loaded pipeline; output as a local run.")
RayAddressOption = typer.Option(
    None, "--ray-address", help="Ray cluster to use, implies --ray (default: RAY_ADDRESS or one started by 'ray start' here, else a local one; 'auto': a running one)."
)
RayActorsOption = typer.Option(None, "--ray-actors", help="Actors in the Ray pool (default: the cluster's CPUs / ray.cpus_per_actor).")


def ray_overrides(ray: bool, ray_address: Optional[str], ray_actors: Optional[int]) -> dict[str, Any]:
    """Config overrides (dotted keys) from the Ray options; an address alone means --ray."""
    return {
        "ray.enabled": True if (ray or ray_address is not None) else None,
        "ray.address": ray_address,
        "ray.actors": ray_actors,
    }


def face_overrides(
    no_detect: bool, margin: Optional[float], min_face_prob: Optional[float], min_face_size: Optional[int], largest_face: bool
) -> dict[str, Any]:
    """Config overrides (dotted keys) from the face pipeline's options."""
    return {
        "face.detect": False if no_detect else None,
        "face.margin": margin,
        "face.min_prob": min_face_prob,
        "face.min_size": min_face_size,
        "face.select": "largest" if largest_face else None,
    }


@contextlib.contextmanager
def progress_task(description: str, total: int) -> Iterator[Any]:
    """A transient Rich progress bar on stderr; yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as progress:
        task = progress.add_task(escape(description), total=total)
        yield lambda n: progress.advance(task, n)
