"""Size, CPU latency and fidelity of exported models: PyTorch vs ONNX Runtime vs TorchScript vs INT8.

For each architecture a checkpoint is exported with ``deepfake_cli.inference.export``
(the code behind ``dfdetect models export``) to ONNX, ONNX INT8 (dynamic),
TorchScript and TorchScript INT8 (dynamic, Linear layers only), then every
variant runs on the same real FaceForensics++ face crops from
``../shared/data/ffpp_faces`` (half real, half fake) in this one process:

- size: the file on disk (for PyTorch, the dfdetect checkpoint);
- latency: milliseconds per call at batch 1 (median and best of the repeats)
  and per image at batch 16 (best), same thread count for every runtime; the
  best is the figure to compare on a shared, busy machine, where the median
  mostly measures contention;
- max |diff|: largest absolute difference from PyTorch's probabilities over
  all crops, and the share of crops given the same label.

``resnet18`` and ``sepcnn`` are seeded untrained models (their numbers show
speed and numerical fidelity, not accuracy); ``mesonet4`` is the published
Meso4_DF weights when ``../shared/weights/mesonet`` is there.

    python benchmarks/export_bench.py                    # resnet18, sepcnn, mesonet4; 2 threads
    python benchmarks/export_bench.py --archs sepcnn --repeats 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFDETECT_SHARED", REPO.parent / "shared"))
FACES = SHARED / "data" / "ffpp_faces" / "train"
MESONET_DF = SHARED / "weights" / "mesonet" / "Meso4_DF.h5"

VARIANTS = (("onnx", None), ("onnx", "dynamic"), ("torchscript", None), ("torchscript", "dynamic"))


def load_crops(n: int) -> list[np.ndarray]:
    from deepfake_cli.media.images import load_image

    half = n // 2
    paths = sorted((FACES / "youtube").glob("*.jpg"))[:half] + sorted((FACES / "Deepfakes").glob("*.jpg"))[: n - half]
    if len(paths) < n:
        sys.exit(f"need {n} face crops under {FACES} (see ../shared/README.md)")
    return [load_image(p) for p in paths]


def make_checkpoint(arch: str, folder: Path) -> Path:
    from deepfake_cli.models.checkpoint import build_checkpoint, save_checkpoint
    from deepfake_cli.labels import BINARY_LABELS
    from deepfake_cli.models import create_model, get_model_spec

    if arch == "mesonet4" and MESONET_DF.is_file():
        from deepfake_cli.models.import_keras import import_mesonet

        return save_checkpoint(import_mesonet(MESONET_DF), folder / "meso4_df.pt")
    torch.manual_seed(0)
    model = create_model(arch)
    ckpt = build_checkpoint(
        model, arch=arch, model_args={"num_classes": 2}, labels=BINARY_LABELS,
        preprocessing=get_model_spec(arch).preprocessing(), provenance={"data": "untrained benchmark model"},
    )
    return save_checkpoint(ckpt, folder / f"{arch}.pt")


def timings_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, best) milliseconds per call after warm-up."""
    for _ in range(3):  # first-call allocations, TorchScript's profiling runs
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), 1000 * min(times)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def bench_arch(arch: str, crops: list[np.ndarray], folder: Path, repeats: int) -> list[dict]:
    from deepfake_cli.inference.classifier import FaceClassifier
    from deepfake_cli.inference.export import ExportedModel, export_checkpoint

    ckpt = make_checkpoint(arch, folder)
    classifier = FaceClassifier.from_checkpoint(ckpt)
    batch = classifier.to_tensor(crops)
    b1, b16 = batch[:1], batch[:16]
    with torch.inference_mode():
        reference = classifier.model(batch).numpy()
    p_ref = softmax(reference)

    def torch_run(x: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return classifier.model(x)

        return run

    def timed(run_b1: Callable[[], object], run_b16: Callable[[], object]) -> dict:
        b1_median, b1_best = timings_ms(run_b1, repeats)
        return {"b1_median": b1_median, "b1_best": b1_best, "b16_best": timings_ms(run_b16, max(3, repeats // 4))[1] / 16}

    rows = [{
        "arch": arch, "runtime": "pytorch", "size_mb": ckpt.stat().st_size / 1e6,
        **timed(torch_run(b1), torch_run(b16)), "max_diff": 0.0, "agree": 1.0,
    }]
    for fmt, quantize in VARIANTS:
        suffix = ".onnx" if fmt == "onnx" else ".torchscript"
        out = folder / f"{arch}{'.int8' if quantize else ''}{suffix}"
        result = export_checkpoint(ckpt, fmt, out, quantize=quantize, crops=crops[:8], force=True)
        x1, x16, xall = b1.numpy(), b16.numpy(), batch.numpy()
        p = softmax(ExportedModel(out, fmt)(xall))
        # A fresh runtime per batch size: TorchScript's profiling executor specialises on the
        # first shapes it sees and runs far slower after a shape change.
        runtime_b1, runtime_b16 = ExportedModel(out, fmt), ExportedModel(out, fmt)
        rows.append({
            "arch": arch,
            "runtime": ("onnxruntime" if fmt == "onnx" else "torchscript") + (" int8-dyn" if quantize else ""),
            "size_mb": result.size_bytes / 1e6,
            **timed(lambda: runtime_b1(x1), lambda: runtime_b16(x16)),
            "max_diff": float(np.abs(p - p_ref).max()),
            "agree": float((p.argmax(1) == p_ref.argmax(1)).mean()),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=["resnet18", "sepcnn", "mesonet4"])
    parser.add_argument("--crops", type=int, default=32, help="real face crops to compare on (half real, half fake)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (median)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    crops = load_crops(max(args.crops, 16))
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            rows += bench_arch(arch, crops, Path(tmp), args.repeats)
    header = (
        f"{'arch':<10} {'runtime':<22} {'size MB':>8} {'b1 ms med':>10} {'b1 ms best':>11} "
        f"{'b16 ms/img':>11} {'x b1':>6} {'max|dp|':>9} {'agree':>6}"
    )
    print(f"{len(crops)} real face crops, {args.threads} threads, torch {torch.__version__}")
    print(header)
    print("-" * len(header))
    for row in rows:
        base = next(r for r in rows if r["arch"] == row["arch"] and r["runtime"] == "pytorch")
        print(
            f"{row['arch']:<10} {row['runtime']:<22} {row['size_mb']:>8.2f} {row['b1_median']:>10.2f} "
            f"{row['b1_best']:>11.2f} {row['b16_best']:>11.2f} {base['b1_best'] / row['b1_best']:>6.2f} "
            f"{row['max_diff']:>9.1e} {row['agree']:>6.0%}"
        )
    print(
        f"(x b1: PyTorch's best batch-1 time / this runtime's; b16: best, per image; "
        f"max|dp|: vs PyTorch's probabilities; load average {os.getloadavg()[0]:.1f}; "
        f"whole run {time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
