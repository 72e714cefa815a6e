"""``--help`` as people read it: usual metavars, defaults and ``DFDETECT_*`` names shown the Typer
way, prose re-flowed to the terminal, long option lists in panels, examples kept as written.

:func:`polish` walks the click command tree once (``RootGroup`` calls it) and only changes
how parameters are shown; parsing, defaults and the configuration's precedence are untouched:
options still default to ``None`` so that a config file and the environment apply, and the
environment variable shown is read by ``config.load_config``, not by click.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from typing import Any

import typer.core

from deepfake_cli.cli.common import default_of

# Options whose config key is set by a helper (common.face_overrides) rather than in the
# command's own overrides dict.
HELPER_KEYS = {"margin": "face.margin", "min_face_prob": "face.min_prob", "min_face_size": "face.min_size"}

# train has some fifty options: grouped into panels (the rest stay under "Options").
TRAIN_PANELS = {
    "Data": ("data", "dataset_weights", "balance_classes", "task", "val_fraction", "split_seed", "group_lookalikes", "methods", "limit_per_class"),
    "Face framing of image-folder crops": ("margin", "square"),
    "Model": ("arch", "pretrained", "init", "input_size"),
    "Optimisation": (
        "epochs", "batch_size", "lr", "weight_decay", "optimizer", "scheduler", "warmup_epochs",
        "freeze_epochs", "unfreeze_fraction", "finetune_lr_factor", "max_steps_per_epoch",
    ),
    "Augmentation": ("augment", "jpeg_augment", "downscale_augment", "blur_augment", "colour_augment", "rotation"),
    "Loss and model selection": ("label_smoothing", "class_weights", "select_metric", "threshold_method"),
    "Hardware": ("device", "workers", "threads", "amp", "cpu_amp", "channels_last", "seed"),
}  # the run's folder, --resume, --config, --json and --help stay under "Options"
PANELS = {"train": TRAIN_PANELS}

# Two or three examples per command, added to its help (and so to docs/cli.md).
EXAMPLES = {
    "predict": (
        "dfdetect predict photo.jpg",
        "dfdetect predict shots/ -f csv -o scores.csv",
        "find . -name '*.jpg' | dfdetect predict - --jsonl --fail-on-fake",
    ),
    "video": (
        "dfdetect video clip.mp4 --out frames.csv",
        "dfdetect video clip.mp4 --annotate clip_boxes.mp4",
        "dfdetect video clips/ --fps 2 --json --annotate scored/",
    ),
    "extract": (
        "dfdetect extract /data/FaceForensics++ --compression c23 -o crops/",
        "dfdetect extract ../shared/data/ffpp_c23 -o /tmp/crops --frames-per-video 4",
    ),
    "train": (
        "dfdetect train --data crops/metadata.csv --arch resnet18 --pretrained",
        "dfdetect train --data faces/ --arch mesonet4 --init meso4_f2f.pt --epochs 28",
        "dfdetect train --resume runs/train/exp/last.pt --epochs 40",
    ),
    "evaluate": (
        "dfdetect evaluate -m runs/train/exp/best.pt --data crops/",
        "dfdetect evaluate -m best.pt --data crops/ --threshold-from val --json",
    ),
    "gradcam": (
        "dfdetect gradcam photo.jpg",
        "dfdetect gradcam photo.jpg --target all -o cams/",
        "dfdetect gradcam crops/ --no-detect --method gradcam++ --csv",
    ),
    "serve": (
        "dfdetect serve --port 9000 --workers 2",
    ),
    "models list": ("dfdetect models list", "dfdetect models list --json"),
    "models info": ("dfdetect models info", "dfdetect models info runs/train/exp/best.pt --json"),
    "models export": (
        "dfdetect models export ffpp_mesonet4 --format onnx",
        "dfdetect models export model.pt --format onnx --quantize dynamic",
    ),
    "models merge": (
        "dfdetect models merge ffpp_dfdc_mobilenetv2_160 runs/train/ft224/best.pt -w 0.7 -o merged.pt",
        "dfdetect evaluate -m merged.pt --data crops/ --threshold-from val",
    ),
    "models import mesonet": (
        "dfdetect models import mesonet Meso4_DF.h5",
        "dfdetect models import mesonet MesoInception_DF.h5 --arch mesoinception4",
    ),
    "models import seed-resnet18": ("dfdetect models import seed-resnet18 best_model.pth --out resnet18_seed.pt",),
    "models import seed-cnn": ("dfdetect models import seed-cnn cnn.pth",),
    "models import seed-cnn-small": ("dfdetect models import seed-cnn-small cnn_small.pth",),
    "config show": ("dfdetect config show", "dfdetect config show -c my.toml --json"),
}

# "(default 10)", "(default: auto)", "(default 1e-5; more)", "; default resnet18." in help prose:
# left out where the default is shown the Typer way.
_DEFAULT_IN_PROSE = (
    (re.compile(r"\s*\(default:?\s[^();]*\)"), ""),
    (re.compile(r"\(default:?\s[^();]*;\s*"), "("),
    (re.compile(r";\s*default:?\s[^();]*(?=\.?$)"), ""),
)


def strip_default(text: str) -> str:
    for pattern, repl in _DEFAULT_IN_PROSE:
        text = pattern.sub(repl, text)
    return text


class DfdetectOption(typer.core.TyperOption):
    """A Typer option whose environment variable is shown, never read by click (the config reads
    ``DFDETECT_*``), and whose shown default is the configuration's, written bare."""

    def resolve_envvar_value(self, ctx: Any) -> None:  # noqa: D102
        return None

    def value_from_envvar(self, ctx: Any) -> None:  # noqa: D102
        return None

    def _get_default_string(self, *, ctx, show_default_is_str, default_value) -> str:  # noqa: ANN001
        if show_default_is_str:
            return str(self.show_default)
        return super()._get_default_string(ctx=ctx, show_default_is_str=show_default_is_str, default_value=default_value)


_BARE = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "bool": "BOOLEAN", "list[str]": "TEXT",
         "list[int]": "INTEGER", "list[float]": "FLOAT", "list[Path]": "PATH"}


class DfdetectArgument(typer.core.TyperArgument):
    """A Typer argument shown as click shows one: ``SOURCES...`` with its type (TEXT, PATH)."""

    def display_type_rich(self, ctx: Any) -> str | None:  # noqa: D102
        return metavar(self)

    def _rich_display_name(self) -> str:
        return self.display_name_raw

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        return name if self.required else f"[{name}]"


def _folding_parameter_help(**kwargs: Any) -> Any:
    """Typer's option help cell, its lines folded rather than cut with "…" when a word (an
    environment variable's name) is wider than the column."""
    columns = _typer_parameter_help(**kwargs)
    for item in getattr(columns, "renderables", []):
        if hasattr(item, "overflow"):
            item.overflow = "fold"
    return columns


def _help_table() -> type:
    from rich.table import Table

    class HelpTable(Table):
        """Typer's options and commands table, whose columns but the last (the help text)
        never wrap or get cut: option names and types stay whole ("--finetune-lr-fact…" at
        80 columns), the help text takes the width left and wraps."""

        def add_row(self, *renderables: Any, **kwargs: Any) -> None:
            super().add_row(*renderables, **kwargs)
            for column in self.columns[:-1]:
                column.no_wrap = True

    return HelpTable


def install_folding() -> None:
    """Help tables whose option names are never cut and whose help cells fold rather than cut
    a word wider than the column; done only when help may be shown (importing Typer's Rich
    help costs about 50 ms, which every other command start would pay)."""
    global _typer_parameter_help
    import typer.rich_utils

    if typer.rich_utils._get_parameter_help is not _folding_parameter_help:
        _typer_parameter_help = typer.rich_utils._get_parameter_help
        typer.rich_utils._get_parameter_help = _folding_parameter_help
        typer.rich_utils.Table = _help_table()


_typer_parameter_help: Any = None


def metavar(param: Any) -> str:
    """TEXT, PATH, FILE, INTEGER, FLOAT, [a|b|c] as click shows them; ``""`` for flags."""
    if getattr(param, "is_flag", False):
        return ""
    desc = param.type_descriptor
    if desc.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
    if desc.is_path:
        return "FILE" if str(desc.path_type).lower() == "file" else "PATH"
    return _BARE.get(param.bare_type(), "TEXT")


def config_keys(callback: Any) -> dict[str, str]:
    """``{parameter name: "section.key"}`` read from the command's overrides dict (its source)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(callback)))
    except (OSError, TypeError, SyntaxError):
        return {}
    params = set(inspect.signature(callback).parameters)
    keys: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str) and re.fullmatch(r"\w+\.\w+", key.value)):
                continue
            names = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} & params
            if len(names) == 1:
                keys.setdefault(names.pop(), key.value)
    for name, key in HELPER_KEYS.items():
        if name in params:
            keys.setdefault(name, key)
    return keys


def reflow(text: str | None) -> str | None:
    """Paragraphs re-flowed (single line breaks joined) so Rich wraps them to the terminal;
    an ``Examples:`` paragraph, or one starting with ``\\b``, keeps its lines (the first
    paragraph, the summary, is always one line of prose)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for p in paragraphs:
        if p.startswith("\b") or p.lstrip().lower().startswith("example"):
            out.append(p.lstrip("\b\n"))  # Typer's Rich help keeps the lines of later paragraphs
        else:
            out.append(" ".join(p.split()))
    return "\n\n".join(out)


def _help_flag(command: Any) -> None:
    """The command's --help/-h option, made and cached now (as click would on first use) so
    that it shows no type either."""
    from typer import _click

    ctx = _click.Context(command)
    ctx.help_option_names = list(HELP_NAMES)
    option = command.get_help_option(ctx)
    if option is not None:
        option.metavar = ""


HELP_NAMES = ("-h", "--help")  # the root's context_settings, which subcommands inherit


def _polish_command(command: Any, path: str) -> None:
    _help_flag(command)
    keys = config_keys(command.callback) if command.callback else {}
    panels = {name: panel for panel, names in PANELS.get(path, {}).items() for name in names}
    for param in command.params:
        if param.name in ("install_completion", "show_completion"):
            continue
        if param.param_type_name == "argument":
            if isinstance(param, typer.core.TyperArgument):
                param.__class__ = DfdetectArgument
            if param.metavar is None:
                param.metavar = param.name.upper() + ("..." if param.nargs == -1 else "")
            continue
        if not isinstance(param, typer.core.TyperOption):
            continue
        if param.metavar is None:
            param.metavar = metavar(param)
        if param.name in panels:
            param.rich_help_panel = panels[param.name]
        key = keys.get(param.name)
        if key is None or param.is_flag and not param.secondary_opts:
            continue
        param.__class__ = DfdetectOption
        section, field = key.split(".")
        param.envvar = f"DFDETECT_{section.upper()}_{field.upper()}"
        param.show_envvar = True
        shown = default_of(key)
        if shown not in ("None", "", "[]", "()"):
            param.show_default = shown
            if param.help:
                param.help = strip_default(param.help)
                if not param.help.rstrip().endswith((".", ")", "?", "!")):
                    param.help = param.help.rstrip() + "."


def polish(command: Any, path: str = "") -> None:
    """Every command under ``command``: metavars, defaults, env var names, panels, re-flowed prose."""
    help_text = command.help
    if path in EXAMPLES and help_text is not None:
        help_text = inspect.cleandoc(help_text) + "\n\nExamples:\n" + "\n".join(f"  {e}" for e in EXAMPLES[path])
    command.help = reflow(help_text)
    command.epilog = reflow(command.epilog)
    if getattr(command, "commands", None) is not None:
        _help_flag(command)
        for param in command.params:  # a group's own options (the root's --version, -q, completion)
            if param.param_type_name == "option" and param.metavar is None:
                param.metavar = "" if param.name in ("install_completion", "show_completion") else metavar(param)
        for name, sub in command.commands.items():
            polish(sub, f"{path} {name}".strip())
    else:
        _polish_command(command, path)
