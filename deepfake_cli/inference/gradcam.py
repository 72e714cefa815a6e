"""Grad-CAM and Grad-CAM++ heatmaps for every registered architecture, and their pictures.

Each architecture declares its target layer in the registry
(``get_model_spec(arch).gradcam_layer``); any other layer can be named. One
forward pass per batch of crops gives both the classification and the
activations; each requested target (the predicted class, forced REAL, forced
FAKE, a class) then costs one ``torch.autograd.grad`` call, so the three-mode
comparison of the report costs one forward and three backward passes.

Written by hand rather than with the ``grad-cam`` package (1.5.7 installs
fine beside opencv-python-headless): importing it pulls scikit-learn, scipy,
matplotlib, ttach and tqdm (+5 s per command on 2 cores), its ``backward()``
fills ``.grad`` on every parameter of the shared model, and it runs one
forward pass per target.

The explained score is the log-odds of the target against every other class,
``logsumexp(logits[target]) - logsumexp(logits[rest])``: a set of classes
("fake" of a 7-class model: every manipulation method) counts as one merged
class, and the score does not depend on how the logits are shifted (imported
sigmoid models have a constant logit, whose gradient alone would be zero).
For a binary model, forced REAL and forced FAKE thus show the evidence for
each side: the two maps are the positive and negative parts of one map.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

from deepfake_cli.config import CAM_METHOD_NAMES
from deepfake_cli.inference.classifier import FaceClassifier, Score
from deepfake_cli.errors import InputFileError, UsageError
from deepfake_cli.faces.detector import Face
from deepfake_cli.media.images import load_image
from deepfake_cli.models import get_model_spec
from deepfake_cli.inference.pipeline import FacePipeline
from deepfake_cli.inference.predict import STATUS_ERROR, STATUS_NO_FACE, STATUS_OK

CAM_METHODS = CAM_METHOD_NAMES
# ``--target all``: the report's comparison (Figure 8): what the model decided, then each class forced.
COMPARISON_MODES = ("predicted", "real", "fake")
NAMED_MODES = (*COMPARISON_MODES, "all")


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class CamTarget:
    """What one heatmap explains.

    ``mode`` is what was asked (``predicted``, ``real``, ``fake``, a class name
    or index), ``name`` the class it resolved to for this crop, ``classes`` the
    classes whose log-odds against the rest is the explained score.
    """

    mode: str
    name: str
    classes: tuple[int, ...]


def _class_index(labels: Sequence[str], text: str) -> int | None:
    lowered = [label.lower() for label in labels]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if re.fullmatch(r"\d+", text) and int(text) < len(labels):
        return int(text)
    return None


def parse_targets(labels: Sequence[str], target: str | int | Sequence[str | int]) -> tuple[str, ...]:
    """Canonical target modes: ``all`` expands to predicted, real, fake; named modes
    are lower-cased; a class name or index becomes the class's own spelling.
    Anything else is a :class:`UsageError` naming the valid targets."""
    items: Sequence[str | int] = [target] if isinstance(target, (str, int)) else list(target)
    modes: list[str] = []
    for item in items:
        text = str(item).strip()
        if text.lower() == "all":
            modes.extend(COMPARISON_MODES)
        elif text.lower() in COMPARISON_MODES:
            modes.append(text.lower())
        elif (index := _class_index(labels, text)) is not None:
            modes.append(labels[index])
        else:
            raise UsageError(
                f"unknown Grad-CAM target '{text}' (valid: {', '.join(NAMED_MODES)}, "
                f"a class name ({', '.join(labels)}) or a class index 0-{len(labels) - 1})"
            )
    if not modes:
        raise UsageError("no Grad-CAM target given")
    return tuple(modes)


def resolve_target(classifier: FaceClassifier, mode: str, score: Score) -> CamTarget:
    """The classes a canonical ``mode`` means for a crop classified as ``score``."""
    labels = classifier.labels
    real = classifier.real_index
    fakes = tuple(i for i in range(len(labels)) if i != real)
    fake_name = "fake" if len(fakes) > 1 else labels[fakes[0]]
    if mode == "predicted":
        if score.label == "real":
            return CamTarget(mode, labels[real], (real,))
        if score.method is not None:  # multiclass: the most likely manipulation method
            return CamTarget(mode, score.method, (labels.index(score.method),))
        return CamTarget(mode, fake_name, fakes)
    if mode == "real":
        return CamTarget(mode, labels[real], (real,))
    if mode == "fake":
        return CamTarget(mode, fake_name, fakes)
    index = labels.index(mode)
    return CamTarget(mode, mode, (index,))


# --------------------------------------------------------------------------- hooks and maps


def default_layer(arch: str) -> str:
    return get_model_spec(arch).gradcam_layer


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (``"layer4.1"``), or a UsageError naming the top-level ones."""
    if not name:
        raise UsageError("this architecture declares no Grad-CAM layer: name one with --layer")
    try:
        return model.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children())
        raise UsageError(
            f"model has no layer '{name}' (its top-level layers: {children}; name nested ones with dots, e.g. 'layer4.1')"
        ) from None


class ActivationRecorder(contextlib.AbstractContextManager):
    """Forward hook on ``module`` that keeps its last output; removed on exit, always.

    The hook hands a copy downstream so that an in-place operation after the
    layer (``out += identity`` in a ResNet block) cannot change the recorded
    activation or its place in the graph.
    """

    def __init__(self, module: nn.Module, layer_name: str = "layer"):
        self.module = module
        self.layer_name = layer_name
        self.activation: torch.Tensor | None = None
        self._handle: Any = None

    def _record(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise UsageError(f"layer '{self.layer_name}' does not output a feature map (N, C, H, W); choose another --layer")
        self.activation = output
        return output.clone()

    def __enter__(self) -> "ActivationRecorder":
        self._handle = self.module.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.activation = None


def log_odds(logits: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """log P(classes) - log P(the rest) from one row of logits."""
    inside = torch.zeros_like(logits, dtype=torch.bool)
    inside[list(classes)] = True
    return torch.logsumexp(logits[inside], dim=0) - torch.logsumexp(logits[~inside], dim=0)


def cam_maps(activation: torch.Tensor, grads: torch.Tensor, method: str) -> torch.Tensor:
    """(N, C, h, w) activations and gradients -> (N, h, w) non-negative class activation maps."""
    if method == "gradcam":
        weights = grads.mean(dim=(2, 3))
    else:
        # Grad-CAM++ (Chattopadhay et al. 2018, eq. 19, exponential-score closed form):
        # alpha = g^2 / (2 g^2 + sum(A) g^3) = 1 / (2 + sum(A) g) where g != 0. The
        # reduced form does not vanish for tiny gradients; layers ending in BatchNorm
        # or SiLU have negative activations, so guard the pole at sum(A) g = -2 too.
        denominator = 2.0 + activation.sum(dim=(2, 3), keepdim=True) * grads
        usable = (grads != 0) & (denominator.abs() > 1e-6)
        alpha = torch.where(usable, 1.0 / torch.where(usable, denominator, torch.ones_like(denominator)), torch.zeros_like(grads))
        weights = (alpha * grads.clamp(min=0)).sum(dim=(2, 3))
    return torch.relu((weights[:, :, None, None] * activation).sum(dim=1))


def upsample_normalised(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """One (h, w) map -> (height, width) float32 scaled to [0, 1] (all zeros stays zeros)."""
    up = cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    up -= up.min()
    peak = float(up.max())
    if peak > 0:
        up /= peak
    return np.clip(up, 0.0, 1.0, out=up)


@dataclass
class Explanation:
    """One heatmap of one crop, and the classification it came with."""

    heatmap: np.ndarray  # float32 (H, W) in [0, 1], the crop's shape
    target: CamTarget
    target_prob: float  # the model's probability of the explained class(es)
    score: Score
    method: str
    layer: str

    @property
    def blank(self) -> bool:
        """No region raises the target's score (every weighted activation is negative): an all-zero map."""
        return not bool(self.heatmap.any())

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.target.mode,
            "target": self.target.name,
            "target_prob": round(self.target_prob, 6),
            "cam_method": self.method,
            "layer": self.layer,
            **self.score.to_dict(),
        }


def check_method(method: str) -> str:
    key = method.lower().replace("_", "").replace("-", "").replace("plusplus", "++")
    if key not in CAM_METHODS:
        raise UsageError(f"unknown Grad-CAM method '{method}' (valid: {', '.join(CAM_METHODS)})")
    return key


def explain_crops(
    classifier: FaceClassifier,
    crops: Sequence[np.ndarray],
    targets: str | int | Sequence[str | int] = "predicted",
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 8,
) -> list[list[Explanation]]:
    """Heatmaps of RGB uint8 face crops: for each crop, one :class:`Explanation` per target.

    ``targets``: ``predicted``, ``real``, ``fake``, a class name or index, a
    list of these, or ``all`` (predicted, real, fake). ``layer`` defaults to
    the one the architecture declares.
    """
    method = check_method(method)
    modes = parse_targets(classifier.labels, targets)
    layer_name = layer or default_layer(classifier.arch)
    module = find_layer(classifier.model, layer_name)
    results: list[list[Explanation]] = []
    for start in range(0, len(crops), batch_size):
        batch = crops[start : start + batch_size]
        # Serve scores inside inference_mode; gradients need a normal autograd context.
        with classifier.model_lock, torch.inference_mode(False), torch.enable_grad():
            x = classifier.to_tensor(batch).requires_grad_(True)  # a graph even if weights are frozen
            with ActivationRecorder(module, layer_name) as recorder:
                logits = classifier.model(x)
                activation = recorder.activation
            if activation is None:
                raise UsageError(f"layer '{layer_name}' is not used by the model's forward pass")
            probs = torch.softmax(logits.detach().float(), dim=1).cpu().numpy()
            scores = classifier.score_rows(probs)
            per_mode: list[tuple[list[CamTarget], np.ndarray]] = []
            for k, mode in enumerate(modes):
                resolved = [resolve_target(classifier, mode, s) for s in scores]
                # Samples are independent in eval mode: one backward of the sum gives every per-sample gradient.
                explained = torch.stack([log_odds(logits[i], t.classes) for i, t in enumerate(resolved)]).sum()
                (grads,) = torch.autograd.grad(explained, activation, retain_graph=k < len(modes) - 1)
                maps = cam_maps(activation.detach().float(), grads.float(), method).cpu().numpy()
                per_mode.append((resolved, maps))
            del logits, activation, x
        for i, crop in enumerate(batch):
            h, w = crop.shape[:2]
            results.append(
                [
                    Explanation(
                        heatmap=upsample_normalised(mode_maps[i], h, w),
                        target=mode_targets[i],
                        target_prob=float(probs[i, list(mode_targets[i].classes)].sum()),
                        score=scores[i],
                        method=method,
                        layer=layer_name,
                    )
                    for mode_targets, mode_maps in per_mode
                ]
            )
    return results


def explain(
    classifier: FaceClassifier,
    crops: Sequence[np.ndarray],
    target: str | int = "predicted",
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """One heatmap per crop: float32 in [0, 1] with the crop's height and width."""
    if str(target).lower() == "all":
        raise UsageError("explain() makes one heatmap per crop; use explain_crops() for target 'all'")
    return [row[0].heatmap for row in explain_crops(classifier, crops, target, method, layer, batch_size)]


# --------------------------------------------------------------------------- pictures


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """[0, 1] map -> RGB uint8 with the jet colour map (blue = 0, red = 1)."""
    gray = np.clip(heatmap * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(crop: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heatmap blended over the crop, RGB uint8 of the crop's shape (the map is resized if needed)."""
    h, w = crop.shape[:2]
    if heatmap.shape[:2] != (h, w):
        heatmap = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(crop, 1.0 - alpha, colorize(heatmap), alpha, 0.0)


def verdict_text(score: Score) -> str:
    """``FAKE (Deepfakes)  confidence 93.1%  p_fake 0.931``."""
    confidence = score.p_fake if score.label == "fake" else 1.0 - score.p_fake
    what = score.label.upper() + (f" ({score.method})" if score.label == "fake" and score.method else "")
    return f"{what}  confidence {confidence:.1%}  p_fake {score.p_fake:.3f}"


def mode_text(e: Explanation) -> str:
    """Row caption: ``predicted: fake``, ``forced REAL``, ``forced FAKE``, ``class: Face2Face``."""
    mode, name = e.target.mode.lower(), e.target.name
    if mode == "predicted":
        head = f"predicted: {name}"
    elif mode in ("real", "fake"):
        head = f"forced {mode.upper()}" + ("" if name.lower() == mode else f" ({name})")
    else:
        head = f"class: {name}"
    return f"{head}  p={e.target_prob:.3f}"


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (20, 20, 20)
_MUTED = (90, 90, 90)


def _text(canvas: np.ndarray, text: str, x: int, baseline: int, scale: float, color=_INK, max_width: int | None = None, thickness: int = 1) -> None:
    """Draw ``text``, shrinking it (down to 60%) and then cutting it to fit ``max_width``."""
    if max_width is not None:
        for _ in range(8):
            if cv2.getTextSize(text, _FONT, scale, thickness)[0][0] <= max_width or scale < 0.36:
                break
            scale *= 0.93
        while len(text) > 4 and cv2.getTextSize(text, _FONT, scale, thickness)[0][0] > max_width:
            text = text[:-4] + "..."
    cv2.putText(canvas, text, (x, baseline), _FONT, scale, color, thickness, cv2.LINE_AA)


def _colorbar(height: int, width: int) -> np.ndarray:
    ramp = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    return colorize(ramp)


def comparison_sheet(
    crop: np.ndarray,
    explanations: Sequence[Explanation],
    caption: str | None = None,
    tile: int = 224,
    alpha: float = 0.5,
) -> np.ndarray:
    """Original | heatmap | overlay, one row per explanation, RGB uint8.

    The title gives the verdict and its confidence; each row names what its
    heatmap explains (predicted class, forced REAL, forced FAKE, a class).
    ``caption`` adds a second, smaller title line (model, method, file).
    """
    if not explanations:
        raise ValueError("comparison_sheet needs at least one explanation")
    h, w = crop.shape[:2]
    tw = max(1, int(round(tile * w / max(h, 1))))
    small = cv2.resize(crop, (tw, tile), interpolation=cv2.INTER_AREA if h > tile else cv2.INTER_LINEAR)
    pad, bar_w, bar_label = 10, 14, 22
    title_h = 34 + (22 if caption else 0)
    header_h, row_label_h = 20, 22
    width = pad + 3 * (tw + pad) + bar_w + bar_label
    height = title_h + header_h + len(explanations) * (row_label_h + tile + pad) + pad // 2
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)

    _text(canvas, verdict_text(explanations[0].score), pad, 26, 0.7, max_width=width - 2 * pad, thickness=2)
    if caption:
        _text(canvas, caption, pad, 50, 0.45, _MUTED, max_width=width - 2 * pad)
    for col, name in enumerate(("face crop", "Grad-CAM heatmap", "overlay")):
        _text(canvas, name, pad + col * (tw + pad), title_h + 14, 0.45, _MUTED, max_width=tw)

    bar = _colorbar(tile, bar_w)
    y = title_h + header_h
    for e in explanations:
        _text(canvas, mode_text(e), pad, y + 16, 0.5, max_width=width - 2 * pad)
        y += row_label_h
        heat = cv2.resize(e.heatmap.astype(np.float32), (tw, tile), interpolation=cv2.INTER_LINEAR)
        colored = colorize(heat)
        tiles = (small, colored, cv2.addWeighted(small, 1.0 - alpha, colored, alpha, 0.0))
        for col, img in enumerate(tiles):
            x = pad + col * (tw + pad)
            canvas[y : y + tile, x : x + tw] = img
        bx = pad + 3 * (tw + pad)
        canvas[y : y + tile, bx : bx + bar_w] = bar
        _text(canvas, "1", bx + bar_w + 4, y + 12, 0.4, _MUTED)
        _text(canvas, "0", bx + bar_w + 4, y + tile - 2, 0.4, _MUTED)
        y += tile + pad
    return canvas


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"cannot write {path}")


# --------------------------------------------------------------------------- image files

# One row per face and target; the same rows go to stdout and to gradcam.csv.
GRADCAM_COLUMNS = (
    "path", "status", "face", "mode", "target", "target_prob", "p_fake", "label", "method",
    "heatmap", "overlay", "sheet", "box", "det_prob", "blank", "error",
)
INDEX_NAME = "gradcam.csv"


def _row(path: str, status: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {column: None for column in GRADCAM_COLUMNS}
    row.update(path=path, status=status, **values)
    return row


def output_prefixes(paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Where each input's files go: its path below the inputs' common folder, without
    extension, inside ``out_dir`` (``roi_1.jpg`` of two folders keeps its folder);
    clashing names (``a.jpg``, ``a.png``) get ``-2``, ``-3``."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    try:
        root = Path(os.path.commonpath([str(p.parent) for p in absolute])) if absolute else None
    except ValueError:  # different drives
        root = None
    used: set[Path] = set()
    prefixes = []
    for p in absolute:
        rel = p.relative_to(root) if root is not None else Path(p.name)
        stem = re.sub(r"[^\w.-]+", "_", rel.stem) or "image"
        base = Path(out_dir) / rel.parent / stem
        candidate, n = base, 2
        while candidate in used:
            candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
        used.add(candidate)
        prefixes.append(candidate)
    return prefixes


def _safe(mode: str) -> str:
    return re.sub(r"[^\w.-]+", "_", mode)


def explain_images(
    paths: Sequence[str | os.PathLike[str]],
    pipeline: FacePipeline,
    out_dir: str | os.PathLike[str],
    targets: str | Sequence[str] = "predicted",
    method: str = "gradcam",
    layer: str | None = None,
    alpha: float = 0.5,
    batch_size: int = 8,
    max_pixels: int = 100_000_000,
) -> Iterator[list[dict[str, Any]]]:
    """Explain every face of every image and write its files; yield each image's rows, in order.

    Rows: one per face and target (``status`` ok), or one ``no_face`` or
    ``error`` row (an unreadable file does not stop the batch). Files per face:
    ``<name>_face<i>_<mode>.npy`` (the raw heatmap, 0-1, crop-sized),
    ``<name>_face<i>_<mode>.png`` (overlay) and ``<name>_face<i>_sheet.png``
    (original | heatmap | overlay, one row per target).
    """
    classifier = pipeline.classifier
    method = check_method(method)
    modes = parse_targets(classifier.labels, targets)
    layer_name = layer or default_layer(classifier.arch)
    find_layer(classifier.model, layer_name)  # a bad --layer fails before any image is read
    names = [str(p) for p in paths]
    prefixes = output_prefixes(names, out_dir)

    for start in range(0, len(names), batch_size):
        chunk = list(zip(names[start : start + batch_size], prefixes[start : start + batch_size]))
        images: dict[int, np.ndarray] = {}
        failed: dict[int, str] = {}
        for k, (name, _) in enumerate(chunk):
            try:
                images[k] = load_image(name, max_pixels=max_pixels)
            except InputFileError as exc:
                failed[k] = str(exc)
        loaded = sorted(images)
        faces = dict(zip(loaded, pipeline.find_faces([images[k] for k in loaded]) if loaded else []))
        crops = {k: pipeline.crops(images[k], faces[k]) for k in loaded}
        explained = iter(explain_crops(classifier, [c for k in loaded for c in crops[k]], modes, method, layer_name, batch_size))
        for k, (name, prefix) in enumerate(chunk):
            if k in failed:
                yield [_row(name, STATUS_ERROR, error=failed[k])]
            elif not faces[k]:
                yield [_row(name, STATUS_NO_FACE)]
            else:
                yield [
                    row
                    for index, (face, crop) in enumerate(zip(faces[k], crops[k]))
                    for row in _write_face(name, prefix, index, face, crop, next(explained), alpha, classifier.name)
                ]


def _write_face(
    name: str, prefix: Path, index: int, face: Face, crop: np.ndarray, explanations: list[Explanation], alpha: float, model: str
) -> list[dict[str, Any]]:
    stem = f"{prefix.name}_face{index}"
    sheet_path = prefix.with_name(f"{stem}_sheet.png")
    first = explanations[0]
    method = "Grad-CAM++" if first.method == "gradcam++" else "Grad-CAM"
    caption = f"{Path(name).name} face {index} | {model} | {method} on {first.layer}"
    write_png(sheet_path, comparison_sheet(crop, explanations, caption=caption, alpha=alpha))
    located = face.to_dict()
    rows = []
    for e in explanations:
        heatmap_path = prefix.with_name(f"{stem}_{_safe(e.target.mode)}.npy")
        overlay_path = heatmap_path.with_suffix(".png")
        np.save(heatmap_path, e.heatmap.astype(np.float32))
        write_png(overlay_path, overlay(crop, e.heatmap, alpha))
        rows.append(
            _row(
                name,
                STATUS_OK,
                face=index,
                mode=e.target.mode,
                target=e.target.name,
                target_prob=round(e.target_prob, 6),
                p_fake=round(e.score.p_fake, 6),
                label=e.score.label,
                method=e.score.method,
                heatmap=str(heatmap_path),
                overlay=str(overlay_path),
                sheet=str(sheet_path),
                box=located["box"],
                det_prob=located["det_prob"],
                blank=e.blank,
            )
        )
    return rows
