"""The one typed configuration object every command shares.

Precedence, lowest first: built-in defaults < ``--config`` file (TOML or YAML)
< ``DFDETECT_<SECTION>_<KEY>`` environment variables < command-line options.
Unknown keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Union

from deepfake_cli.errors import ConfigError

ENV_PREFIX = "DFDETECT_"

Device = Literal["auto", "cpu", "cuda"]
# How a track's face scores become one score (inference/aggregate.py implements each).
Aggregation = Literal["mean", "max", "confident"]
# Test-time views averaged per crop: "flip" adds the mirrored crop (twice the classifier's
# work); "auto": what the checkpoint was calibrated with (its preprocessing.tta).
TestTimeViews = Literal["auto", "none", "flip"]
AGGREGATION_NAMES: tuple[str, ...] = typing.get_args(Aggregation)
# Grad-CAM variants (inference/gradcam.py).
CamMethod = Literal["gradcam", "gradcam++"]
CAM_METHOD_NAMES: tuple[str, ...] = typing.get_args(CamMethod)

# Face framing when no model says otherwise: the crop is the box plus this fraction of its
# size (0.3: 1.3 times the box, 15% on each side), made square around its centre first.
# The one place to change the face margin; faces/, models/checkpoint.py and data/extract.py use it.
DEFAULT_FACE_MARGIN = 0.3
DEFAULT_FACE_SQUARE = True
# A verdict is "borderline" when its p_fake is closer than this to the threshold
# (inference/verdict.py); the classifier carries it beside its threshold.
DEFAULT_BORDERLINE_BAND = 0.1


@dataclass
class DataConfig:
    """Where training/evaluation data lives and how it is split."""

    # One dataset, or several for train/evaluate (``--data A --data B``): each is split on its own.
    root: str | list[str] | None = None
    task: Literal["binary", "multiclass"] = "binary"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0
    # Before carving val out of image folders, join crops that look like one person in one
    # setting (data/lookalike.py): FF++'s roi_N.jpg names carry no identity.
    group_lookalikes: bool = True
    methods: list[str] | None = None
    compression: str | None = None
    # dfdetect extract: which layout, which frames, which faces, how crops are written
    # (face.margin/square/min_prob/min_size/crop_size apply too).
    layout: Literal["auto", "ffpp", "kaggle", "dfdc", "real-fake"] = "auto"
    splits_dir: str | None = None
    sample_every: int = 10
    frames_per_video: int | None = None
    all_faces: bool = False
    detect_max_side: int | None = 640
    jpeg_quality: int = 95
    extract_workers: int = 1
    # dfdetect train/evaluate: a balanced subset, at most N crops per class in train (others in proportion).
    limit_per_class: int | None = None
    # dfdetect train on image folders (--margin auto): measure how their crops are framed with
    # MTCNN (data/framing_probe.py) and record that, so inference cuts faces the same way.
    measure_framing: bool = False


@dataclass
class FaceConfig:
    """The face pipeline shared by extract, predict, video, gradcam and serve.

    ``margin`` and ``square`` left unset mean "the framing the model was trained
    on" (stored in its checkpoint), or DEFAULT_FACE_MARGIN/DEFAULT_FACE_SQUARE (0.3/True)
    when no model is involved.
    """

    detect: bool = True
    margin: float | None = None
    square: bool | None = None
    min_prob: float = 0.95
    min_size: int = 50
    detect_max_side: int | None = 1280
    select: Literal["all", "largest"] = "all"
    crop_size: int | None = 224


@dataclass
class ModelConfig:
    """Which model to build or load."""

    name: str | None = None
    arch: str = "resnet18"
    pretrained: bool = False
    # Training starts from this checkpoint's weights (a path or shipped model name,
    # e.g. a 'dfdetect models import' output) instead of random or ImageNet ones.
    init: str | None = None
    num_classes: int | None = None


@dataclass
class TrainConfig:
    """Training recipe; defaults follow the first report."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-5
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    scheduler: Literal["none", "cosine", "plateau"] = "none"
    class_weighted: bool = True
    label_smoothing: float = 0.0
    # auc_mean: the mean of each dataset's validation AUC (with several --data; one: their AUC).
    select_metric: Literal["auc", "auc_mean", "accuracy", "loss"] = "auc"
    freeze_epochs: int = 0
    unfreeze_fraction: float = 1.0
    finetune_lr_factor: float = 0.1
    augment: Literal["none", "basic", "strong"] = "basic"
    jpeg_augment: bool = False
    rotation_augment: float = 0.0
    # Random loss of resolution (shrink, then enlarge back), for small faces and low bitrates.
    downscale_augment: bool = False
    # Random Gaussian blur (40% of crops) and colour shifts (saturation ±25%, 5% grey), both classes.
    blur_augment: bool = False
    colour_augment: bool = False
    input_size: int | None = None
    workers: int = 2
    amp: bool = True
    channels_last: bool = True
    out_dir: str = "runs/train"
    name: str | None = None
    max_steps_per_epoch: int | None = None
    # Linear warm-up (in epochs, fractions allowed) before the cosine schedule.
    warmup_epochs: float = 0.0
    # How best.pt's decision threshold is chosen on the validation split ("fixed": 0.5).
    threshold_method: Literal["eer", "youden", "fixed"] = "eer"
    # Decoded training crops stay in memory when they fit in this budget; else they are read per batch.
    cache_max_mb: int = 4096
    # bf16 autocast on CPU (`amp` is CUDA's): about 3x faster for resnet18/cnn_small on CPUs with AMX,
    # slower for depthwise convolutions (sepcnn).
    cpu_amp: bool = False
    # Several datasets: each one's share of an epoch's draws, in --data order (default: by size).
    # A small dataset given a larger share is drawn more than once an epoch.
    dataset_weights: list[float] | None = None
    # Split each dataset's draws evenly over its classes (reals drawn more where fakes outnumber
    # them), so no dataset's real/fake ratio becomes a cue; class weights then come out near 1.
    balance_classes: bool = False


@dataclass
class PredictConfig:
    """Inference on images (and the classification step of video/serve).

    ``borderline_band``: a verdict whose p_fake is closer than this to the threshold
    (``|p_fake - threshold| < band``, in p_fake units) is marked borderline: ``fake?``/``real?``
    in terminal tables, ``borderline`` and the signed ``margin`` (p_fake - threshold) in JSON,
    CSV and the web API. It is still the verdict: counts and exit codes do not change. 0: never.

    ``tta``: test-time augmentation. ``flip`` scores each crop and its mirror image and
    averages their probabilities; ``auto`` does what the checkpoint's threshold was chosen
    with (``preprocessing.tta``); ``none`` scores the crop alone (half the classifier's work).
    """

    batch_size: int = 32
    threshold: float | None = None
    # A verdict whose p_fake is within this of the threshold (|p_fake - threshold| < band) is
    # marked borderline (`borderline`, signed `margin`) in every output; 0: never. Exit codes ignore it.
    borderline_band: float = DEFAULT_BORDERLINE_BAND
    # Test-time views averaged per crop; auto: the checkpoint's own (preprocessing.tta).
    tta: TestTimeViews = "auto"
    max_image_pixels: int = 100_000_000


@dataclass
class VideoConfig:
    """Frame sampling, tracking and aggregation for video scans."""

    every: int = 10
    fps: float | None = None
    frames: int | None = None
    start: float | None = None
    end: float | None = None
    aggregate: Aggregation = "confident"
    # Faces are searched as if frames were shrunk to this longer side: MTCNN's image
    # pyramid starts at the level it would use there (the cost), every level resampled
    # from the full frame (the boxes: full-frame MTCNN's; frames over twice this size are
    # shrunk to twice it first). Smaller is faster but misses small faces sooner.
    detect_max_side: int | None = 960
    # Sampled frames handed on together (unset: 8 on a GPU, 2 on the CPU): each is
    # detected in turn within its segment, then their faces are classified in one batch.
    detect_batch: int | None = None
    # Detection threads, one torch thread each (unset: one per core, at most 4; 1 on a GPU).
    detect_workers: int | None = None
    # Seconds between whole-frame face searches; the sampled frames in between are
    # searched around the faces of the frame before (same boxes, ~5x cheaper) and where
    # the frame changed (faces coming into view), and whole again when a face is not
    # found there. The periodic whole search is a backstop for faces that appear without
    # changing the frame much. 0: every sampled frame whole.
    redetect_every: float = 4.0
    # Size of that search window, in face sizes (the longer side of the box).
    track_reach: float = 2.0
    track_iou: float = 0.3
    # A track ends after this many sampled frames without a matching face.
    track_max_missed: int = 5
    # Tracks with fewer faces (passing detections), or seen for less time (first to
    # last face plus one sampling step, in seconds), do not vote on the video's verdict,
    # unless no track is that long. Time as well as faces: at --every 2, three faces are
    # 0.24 s of video, a face glimpsed in a cut.
    min_track_faces: int = 3
    min_track_seconds: float = 1.0


@dataclass
class ServeConfig:
    """The REST API and web page.

    ``annotated_ttl`` (seconds) and ``annotated_max_mb``: how long annotated videos written for
    ``POST /predict/video?annotate=true`` stay downloadable at their ``annotated_url``, and how
    much room they may take in all (beyond it the oldest are removed first); they live in the
    server's upload folder (``upload_dir``) and go with it when the server stops.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_upload_mb: float = 50.0
    cors: bool = False
    # Uploaded videos are written here (under names we choose) while scanned; default: the system temp dir.
    upload_dir: str | None = None
    # Seconds a connection may stay idle, new (no request yet) or between requests, before it is closed.
    timeout_keep_alive: float = 5.0
    # Connections and requests at once; beyond it, requests get 503 (uvicorn's limit_concurrency). 0: no limit.
    limit_concurrency: int = 100
    # Connections the system queues for the server to accept (the listen backlog).
    backlog: int = 128
    # Largest request line and headers, in bytes; a longer head gets 400 (h11's incomplete-event limit).
    max_header_bytes: int = 16384
    # Annotated videos (POST /predict/video?annotate=true, served at /annotated/<id>.mp4) are kept
    # this many seconds after their scan, and the oldest removed first beyond this many MB in all.
    annotated_ttl: float = 900.0
    annotated_max_mb: float = 2048.0


@dataclass
class GradcamConfig:
    """Grad-CAM explanations (``dfdetect gradcam`` and the API's /gradcam)."""

    target: str = "predicted"
    method: CamMethod = "gradcam"
    layer: str | None = None
    alpha: float = 0.5
    batch_size: int = 8
    out_dir: str = "runs/gradcam"  # each run without --out writes into a new exp, exp2, ... here


@dataclass
class RuntimeConfig:
    """Where and how computation runs."""

    device: Device = "auto"
    # CPU threads for torch; unset or 0: torch's default (one per core).
    num_threads: int | None = None
    seed: int = 0
    log_level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass
class RayConfig:
    """predict, video and extract on a Ray cluster (``--ray``; install ``dfdetect[ray]``).

    Inputs are read, and annotated videos written, by the workers at the paths the driver
    sees (a shared filesystem on a multi-node cluster); results and crops return to the
    driver, which writes stdout, ``--out`` and the dataset folder as a local run does.
    """

    enabled: bool = False
    # Unset: join the cluster RAY_ADDRESS names or one started here by 'ray start', else start
    # a local one (shut down at the end); 'auto': join a running cluster (an error if none);
    # or an address such as 'head-node:6379' or 'ray://head-node:10001'.
    address: str | None = None
    # Actors, each holding one loaded face pipeline (unset: the cluster's CPUs / cpus_per_actor,
    # or its GPUs / gpus_per_actor when that is set; never more than there are inputs).
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    # A worker process that dies (killed, out of memory) is restarted and its task retried up to
    # this many times; after that its inputs become error rows (extract: errors.csv, redone on rerun).
    max_retries: int = 2


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    gradcam: GradcamConfig = field(default_factory=GradcamConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, overrides: Mapping[str, Any]) -> "Config":
        """A copy with dotted-key overrides (``{"face.margin": 0.2}``) applied."""
        new = Config.from_dict(self.to_dict())
        for key, value in overrides.items():
            _set_dotted(new, key, value, source="override")
        return new

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "Config":
        cfg = cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a table of sections, got {type(data).__name__}")
        for section, values in data.items():
            if section not in SECTIONS:
                raise ConfigError(
                    f"{source}: unknown section '{section}' (valid: {', '.join(SECTIONS)})"
                )
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source}: section '{section}' must be a table")
            for key, value in values.items():
                _set_dotted(cfg, f"{section}.{key}", value, source=source)
        return cfg


SECTIONS: dict[str, type] = typing.get_type_hints(Config)


def _field_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _set_dotted(cfg: Config, dotted: str, value: Any, source: str) -> None:
    section, _, key = dotted.partition(".")
    if section not in SECTIONS or not key:
        raise ConfigError(f"{source}: unknown key '{dotted}'")
    section_obj = getattr(cfg, section)
    types_ = _field_types(type(section_obj))
    if key not in types_:
        valid = ", ".join(types_)
        raise ConfigError(f"{source}: unknown key '{dotted}' (valid in [{section}]: {valid})")
    setattr(section_obj, key, coerce(value, types_[key], f"{dotted}", source))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"", "none", "null"}


def coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check (and, for strings from the environment, convert) one value."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    from_text = isinstance(value, str)

    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if value is None or (from_text and value.strip().lower() in _NONE and str not in non_none):
            return None
        errors = []
        for option in non_none:
            try:
                return coerce(value, option, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{source}: bad value for '{key}'")

    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(
            f"{source}: '{key}' must be one of {', '.join(map(str, args))}, got {value!r}"
        )

    if origin in (list, tuple):
        inner = args[0] if args else str
        if from_text and value.strip().startswith("["):
            # A JSON/TOML-style list ('["Deepfakes", "FaceSwap"]'), as written in config files.
            try:
                items = json.loads(value)
            except ValueError:
                raise ConfigError(f"{source}: '{key}' is not a valid list: {value!r}") from None
            if not isinstance(items, list):
                raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        elif from_text:
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ConfigError(f"{source}: '{key}' must be a list, got {type(value).__name__}")
        return [coerce(v, inner, key, source) for v in items]

    if annotation is bool:
        if isinstance(value, bool):
            return value
        if from_text and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")

    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text:
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")

    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_text:
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")

    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, Path):
            return str(value)
        raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")

    raise ConfigError(f"{source}: cannot set '{key}' of type {annotation}")  # pragma: no cover


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config file into plain dicts."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
            return data or {}
        if suffix == ".json":
            return json.loads(text)
    except ConfigError:
        raise
    except Exception as exc:  # parse errors of three libraries
        raise ConfigError(f"{path}: cannot parse config file: {exc}") from exc
    raise ConfigError(f"{path}: config files must be .toml, .yaml, .yml or .json")


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """Dotted keys from ``DFDETECT_<SECTION>_<KEY>`` variables.

    Variables whose first word is not a config section (``DFDETECT_HOME``) are
    left alone; a known section with an unknown key is an error.
    """
    found: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section, _, key = rest.partition("_")
        if section in SECTIONS:
            if not key:
                raise ConfigError(f"environment: {name} names a section, not a key")
            found[f"{section}.{key}"] = value
    return found


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Resolve the configuration: defaults < file < environment < overrides.

    ``overrides`` holds dotted keys from command-line options; ``None`` values
    are options the user did not give and are skipped.
    """
    cfg = Config()
    if config_file is not None:
        cfg = Config.from_dict(read_config_file(config_file), source=str(config_file))
    environ = os.environ if environ is None else environ
    for key, value in env_overrides(environ).items():
        _set_dotted(cfg, key, value, source=f"environment {ENV_PREFIX}{key.replace('.', '_').upper()}")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(cfg, key, value, source="command line")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Range checks that types alone cannot express."""
    # inf and nan parse as floats but compare strangely (nan fails every range test
    # with a wrong message; inf overflows frame arithmetic): no setting takes them.
    for section in dataclasses.fields(cfg):
        values = getattr(cfg, section.name)
        for item in dataclasses.fields(values):
            value = getattr(values, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"'{section.name}.{item.name}' must be a finite number, not {value}")
    checks = [
        ("face.min_prob", 0.0 <= cfg.face.min_prob <= 1.0, "must be between 0 and 1"),
        ("face.min_size", cfg.face.min_size >= 0, "must be >= 0"),
        ("face.margin", cfg.face.margin is None or -0.5 <= cfg.face.margin <= 3.0, "must be between -0.5 and 3"),
        ("predict.batch_size", cfg.predict.batch_size >= 1, "must be >= 1"),
        ("runtime.num_threads", cfg.runtime.num_threads is None or cfg.runtime.num_threads >= 0, "must be >= 0 (0: torch's default)"),
        ("predict.threshold", cfg.predict.threshold is None or 0.0 <= cfg.predict.threshold <= 1.0, "must be between 0 and 1"),
        ("predict.borderline_band", 0.0 <= cfg.predict.borderline_band <= 1.0, "must be between 0 and 1 (0: never borderline)"),
        ("train.batch_size", cfg.train.batch_size >= 1, "must be >= 1"),
        ("train.epochs", cfg.train.epochs >= 1, "must be >= 1"),
        ("train.lr", cfg.train.lr > 0, "must be > 0"),
        ("train.weight_decay", cfg.train.weight_decay >= 0, "must be >= 0"),
        ("train.label_smoothing", 0.0 <= cfg.train.label_smoothing < 1.0, "must be in [0, 1)"),
        ("train.freeze_epochs", cfg.train.freeze_epochs >= 0, "must be >= 0"),
        ("train.unfreeze_fraction", 0.0 < cfg.train.unfreeze_fraction <= 1.0, "must be in (0, 1]"),
        ("train.finetune_lr_factor", cfg.train.finetune_lr_factor > 0, "must be > 0"),
        ("train.rotation_augment", 0.0 <= cfg.train.rotation_augment <= 180.0, "must be between 0 and 180 degrees"),
        ("train.input_size", cfg.train.input_size is None or cfg.train.input_size >= 16, "must be >= 16"),
        ("train.workers", cfg.train.workers >= 0, "must be >= 0"),
        ("train.max_steps_per_epoch", cfg.train.max_steps_per_epoch is None or cfg.train.max_steps_per_epoch >= 1, "must be >= 1"),
        ("train.warmup_epochs", cfg.train.warmup_epochs >= 0, "must be >= 0"),
        ("train.cache_max_mb", cfg.train.cache_max_mb >= 0, "must be >= 0"),
        ("data.limit_per_class", cfg.data.limit_per_class is None or cfg.data.limit_per_class >= 1, "must be >= 1"),
        ("data.val_fraction", 0.0 <= cfg.data.val_fraction < 1.0, "must be in [0, 1)"),
        ("data.test_fraction", 0.0 <= cfg.data.test_fraction < 1.0, "must be in [0, 1)"),
        ("video.every", cfg.video.every >= 1, "must be >= 1"),
        ("video.fps", cfg.video.fps is None or cfg.video.fps > 0, "must be > 0"),
        ("video.frames", cfg.video.frames is None or cfg.video.frames >= 1, "must be >= 1"),
        ("video.start", cfg.video.start is None or cfg.video.start >= 0, "must be >= 0 seconds"),
        ("video.end", cfg.video.end is None or cfg.video.end > (cfg.video.start or 0.0), "must be after video.start"),
        ("video.detect_max_side", cfg.video.detect_max_side is None or cfg.video.detect_max_side >= 64, "must be >= 64"),
        ("video.detect_batch", cfg.video.detect_batch is None or cfg.video.detect_batch >= 1, "must be >= 1"),
        ("video.detect_workers", cfg.video.detect_workers is None or cfg.video.detect_workers >= 1, "must be >= 1"),
        ("video.track_iou", 0.0 < cfg.video.track_iou <= 1.0, "must be in (0, 1]"),
        ("video.redetect_every", cfg.video.redetect_every >= 0.0, "must be >= 0 (0: search every sampled frame whole)"),
        ("video.track_reach", cfg.video.track_reach >= 1.0, "must be >= 1 (face sizes)"),
        ("video.track_max_missed", cfg.video.track_max_missed >= 0, "must be >= 0"),
        ("video.min_track_faces", cfg.video.min_track_faces >= 1, "must be >= 1"),
        ("video.min_track_seconds", math.isfinite(cfg.video.min_track_seconds) and cfg.video.min_track_seconds >= 0,
         "must be a finite number >= 0"),
        ("data.sample_every", cfg.data.sample_every >= 1, "must be >= 1"),
        ("data.frames_per_video", cfg.data.frames_per_video is None or cfg.data.frames_per_video >= 1, "must be >= 1"),
        ("data.jpeg_quality", 1 <= cfg.data.jpeg_quality <= 100, "must be between 1 and 100"),
        ("data.extract_workers", cfg.data.extract_workers >= 1, "must be >= 1"),
        ("data.detect_max_side", cfg.data.detect_max_side is None or cfg.data.detect_max_side >= 0, "must be >= 0"),
        ("serve.port", 0 <= cfg.serve.port <= 65535, "must be a TCP port"),
        ("serve.workers", cfg.serve.workers >= 1, "must be >= 1"),
        ("serve.max_upload_mb", cfg.serve.max_upload_mb > 0, "must be > 0"),
        ("serve.timeout_keep_alive", cfg.serve.timeout_keep_alive > 0, "must be > 0"),
        ("serve.limit_concurrency", cfg.serve.limit_concurrency >= 0, "must be >= 0 (0: no limit)"),
        ("serve.backlog", cfg.serve.backlog >= 1, "must be >= 1"),
        ("serve.max_header_bytes", cfg.serve.max_header_bytes >= 1024, "must be >= 1024"),
        ("serve.annotated_ttl", cfg.serve.annotated_ttl > 0, "must be > 0 seconds"),
        ("serve.annotated_max_mb", cfg.serve.annotated_max_mb > 0, "must be > 0"),
        ("gradcam.alpha", 0.0 <= cfg.gradcam.alpha <= 1.0, "must be between 0 and 1"),
        ("gradcam.batch_size", cfg.gradcam.batch_size >= 1, "must be >= 1"),
        ("ray.actors", cfg.ray.actors is None or cfg.ray.actors >= 1, "must be >= 1"),
        ("ray.cpus_per_actor", cfg.ray.cpus_per_actor >= 0, "must be >= 0"),
        ("ray.gpus_per_actor", cfg.ray.gpus_per_actor >= 0, "must be >= 0"),
        ("ray.max_retries", cfg.ray.max_retries >= 0, "must be >= 0"),
    ]
    for key, ok, message in checks:
        if not ok:
            raise ConfigError(f"'{key}' {message}")


def save_resolved_config(cfg: Config, directory: str | os.PathLike[str], name: str = "config.json") -> Path:
    """Write the resolved config beside a run's outputs."""
    out = Path(directory) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    return out


def to_toml(cfg: Config) -> str:
    """The config as TOML text (unset values shown as comments), loadable with --config."""
    lines: list[str] = []
    for section, values in cfg.to_dict().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                lines.append(f"# {key} = (unset)")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
