"""Export a checkpoint's model to ONNX or TorchScript, optionally INT8, and check it against PyTorch.

The exported graph takes the preprocessed batch the PyTorch model takes
(``float32`` NCHW at the checkpoint's input size, RGB scaled to [0, 1] then
normalised with its mean/std) with a dynamic batch axis, and returns the
logits; labels, preprocessing and threshold travel inside the file as JSON
(ONNX metadata ``dfdetect``, TorchScript extra file ``dfdetect.json``).

``--quantize dynamic`` stores weights as INT8 and quantises activations at run
time: for ONNX with onnxruntime's quantizer (Conv, MatMul/Gemm), for
TorchScript with PyTorch's dynamic quantization (Linear layers only).

Every export is run once on real inputs (face crops, or seeded random images
when none are given) and compared with PyTorch: the maximum absolute
difference of logits and probabilities is reported; a float export that
differs by more than the tolerance is an error and its file is removed.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.errors import DfdetectError, ExportError, OptionalDependencyError, OutputError, UsageError
from deepfake_cli.output import atomic_path, ensure_output_dir

EXPORT_FORMATS = ("onnx", "torchscript")
QUANTIZE_MODES = ("dynamic",)
ONNX_OPSET = 17
# Float exports must reproduce PyTorch's probabilities to this; INT8 ones are only reported.
FLOAT_TOLERANCE = 1e-4
METADATA_KEY = "dfdetect"
TORCHSCRIPT_METADATA_FILE = "dfdetect.json"
_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript"}


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OptionalDependencyError("ONNX export needs onnx and onnxruntime: pip install 'dfdetect[export]'") from exc


def default_export_path(checkpoint: str | os.PathLike[str], fmt: str, quantize: str | None = None) -> Path:
    """``<name>[.int8].onnx|.torchscript`` in the current directory; a run's ``exp3/best.pt`` is ``exp3_best``."""
    from deepfake_cli.models.checkpoint import checkpoint_label

    stem = checkpoint_label(checkpoint).replace("/", "_") + (".int8" if quantize else "")
    return Path.cwd() / f"{stem}{_SUFFIX[fmt]}"


def export_metadata(classifier: FaceClassifier) -> dict[str, Any]:
    """What another runtime needs to feed the exported graph and read its output."""
    return {
        "name": classifier.name,
        "arch": classifier.arch,
        "labels": classifier.labels,
        "threshold": classifier.threshold,
        "preprocessing": classifier.preprocessing,
        "input": "float32 NCHW RGB batch: pixels / 255, minus mean, divided by std, at input_size",
        "output": "logits; softmax gives the probabilities of labels; p_fake = 1 - p(real)",
        # The graph scores one view; the threshold was chosen on what dfdetect scores.
        "tta": (
            "flip: average the softmax of each crop and of its horizontal mirror image before the threshold"
            if classifier.tta == "flip" else "none"
        ),
    }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the deprecation chatter of the export APIs (their replacements need extra packages)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's quantizer logs advice on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, Any], quantize: str | None, opset: int
) -> Path:
    _require_onnx()
    import onnx

    if opset < 17:
        raise UsageError(f"ONNX opset must be 17 or newer, not {opset}")
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        # The TorchScript-based exporter: deterministic, fast, and needs no onnxscript.
        kwargs["dynamo"] = False
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(fp32),
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                do_constant_folding=True,
                **kwargs,
            )
        source = fp32
        if quantize == "dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            source = Path(tmp) / "model.int8.onnx"
            with _quiet():
                quantize_dynamic(str(fp32), str(source), weight_type=QuantType.QInt8)
        graph = onnx.load(str(source))
        entry = graph.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
        graph.producer_name = "dfdetect"
        onnx.checker.check_model(graph)
        onnx.save(graph, str(path))
    return path


def export_torchscript(
    model: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, Any], quantize: str | None
) -> Path:
    if quantize == "dynamic":
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as exc:
            raise OptionalDependencyError(
                "this PyTorch has no torch.ao.quantization; use --format onnx --quantize dynamic"
            ) from exc
        with _quiet():
            model = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    with _quiet(), torch.no_grad():
        # Checked below against PyTorch on real inputs, so trace's own check is skipped.
        scripted = torch.jit.trace(model, example, check_trace=False)
        # Into memory, then written here: torch's own file writer aborts the process (exit 134)
        # when the disk fills; a Python write raises OSError (ENOSPC) that is reported.
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer, _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(metadata)})
    with open(path, "wb") as fh:
        fh.write(buffer.getbuffer())
    return path


class ExportedModel:
    """An exported file loaded in its runtime: ``model(batch) -> logits`` on NumPy arrays."""

    def __init__(self, path: str | os.PathLike[str], fmt: str | None = None, threads: int | None = None):
        self.path = Path(path)
        self.format = fmt or ("onnx" if self.path.suffix == ".onnx" else "torchscript")
        threads = threads or torch.get_num_threads()
        self.metadata: dict[str, Any] = {}
        if self.format == "onnx":
            _require_onnx()
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            meta = self._session.get_modelmeta().custom_metadata_map
            self.metadata = json.loads(meta.get(METADATA_KEY, "{}"))
            self._run: Callable[[np.ndarray], np.ndarray] = lambda x: self._session.run(None, {"input": x})[0]
        else:
            extra = {TORCHSCRIPT_METADATA_FILE: ""}
            with _quiet():
                module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
            self.metadata = json.loads(extra[TORCHSCRIPT_METADATA_FILE] or "{}")
            self._module = module.eval()

            def run(x: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return self._module(torch.from_numpy(x)).numpy()

            self._run = run

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))


@dataclass
class Verification:
    inputs: int
    input_kind: str
    max_abs_diff_logits: float
    max_abs_diff_probs: float
    label_agreement: float
    tolerance: float | None
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verification_batch(classifier: FaceClassifier, crops: Sequence[np.ndarray] | None, n_random: int = 8) -> tuple[torch.Tensor, str]:
    """Face crops preprocessed as the classifier does, or seeded random images when there are none."""
    if crops:
        return classifier.to_tensor(list(crops)).cpu(), "face crops"
    size = classifier.input_size
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (n_random, size, size, 3), dtype=torch.uint8, generator=generator)
    return classifier.to_tensor(list(pixels.numpy())).cpu(), "random images"


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def compare_outputs(reference: np.ndarray, exported: np.ndarray) -> dict[str, float]:
    """Max abs difference of logits and of softmax probabilities, and the share of equal argmax."""
    return {
        "max_abs_diff_logits": float(np.abs(reference - exported).max()),
        "max_abs_diff_probs": float(np.abs(_softmax(reference) - _softmax(exported)).max()),
        "label_agreement": float((reference.argmax(1) == exported.argmax(1)).mean()),
    }


def verify_export(
    classifier: FaceClassifier, exported: ExportedModel, batch: torch.Tensor, input_kind: str, tolerance: float | None
) -> Verification:
    with torch.inference_mode():
        reference = classifier.model.cpu()(batch).float().numpy()
    diff = compare_outputs(reference, exported(batch.numpy()))
    ok = tolerance is None or diff["max_abs_diff_probs"] <= tolerance
    return Verification(inputs=len(batch), input_kind=input_kind, tolerance=tolerance, ok=ok, **diff)


@dataclass
class ExportResult:
    source: str
    path: str
    format: str
    quantize: str | None
    opset: int | None
    size_bytes: int
    checkpoint_size_bytes: int | None
    verification: Verification

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verification"] = self.verification.to_dict()
        return data


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    fmt: str,
    out: str | os.PathLike[str] | None = None,
    quantize: str | None = None,
    crops: Sequence[np.ndarray] | None = None,
    tolerance: float | None = None,
    opset: int = ONNX_OPSET,
    force: bool = False,
) -> ExportResult:
    """Export ``checkpoint`` to ``fmt`` and verify it; ``tolerance`` defaults to 1e-4 for float exports.

    An existing file is only replaced with ``force`` (as ``models import`` does).
    """
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not '{fmt}'")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise UsageError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, not '{quantize}'")
    if fmt == "onnx":
        _require_onnx()
    if tolerance is None and quantize is None:
        tolerance = FLOAT_TOLERANCE
    path = Path(out) if out is not None else default_export_path(checkpoint, fmt, quantize)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    ensure_output_dir(path.parent)  # all before the model loads
    classifier = FaceClassifier.from_checkpoint(checkpoint, device="cpu")
    batch, input_kind = verification_batch(classifier, crops)
    metadata = export_metadata(classifier)
    model = classifier.model.cpu().eval()
    # Written and verified beside --out, then renamed onto it: a full disk, a failed check or
    # Ctrl-C never leaves a truncated file under the final name, and a file replaced with
    # --force stays as it was until the new one is whole.
    with atomic_path(path, keep_suffix=True) as temp:
        try:
            if fmt == "onnx":
                export_onnx(model, batch[:1], temp, metadata, quantize, opset)
            else:
                export_torchscript(model, batch[:1], temp, metadata, quantize)
        except DfdetectError:
            raise
        except OSError as exc:  # disk full, no permission: said with the file's name
            raise ExportError(f"{path}: cannot write the {fmt} export ({exc.strerror or exc})") from exc
        except Exception as exc:  # exporter, quantizer and ONNX checker errors of every kind
            first = str(exc).strip().splitlines()
            raise ExportError(f"exporting {classifier.arch} to {fmt} failed: {first[0] if first else type(exc).__name__}") from exc
        verification = verify_export(classifier, ExportedModel(temp, fmt), batch, input_kind, tolerance)
        if not verification.ok:
            raise ExportError(
                f"the {fmt} export differs from PyTorch by {verification.max_abs_diff_probs:.2e} in probability "
                f"(tolerance {tolerance:.0e}); nothing written"
            )
    ckpt_path = Path(checkpoint)
    return ExportResult(
        source=str(checkpoint),
        path=str(path),
        format=fmt,
        quantize=quantize,
        opset=opset if fmt == "onnx" else None,
        size_bytes=path.stat().st_size,
        checkpoint_size_bytes=ckpt_path.stat().st_size if ckpt_path.is_file() else None,
        verification=verification,
    )
