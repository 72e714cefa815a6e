"""Crops per second of ``dfdetect extract`` against the naive per-frame loop.

Naive, as in the first report's script: for every sampled frame, seek to it
(``CAP_PROP_POS_FRAMES``), read it, run facenet-pytorch MTCNN with its default
settings on the full frame, one frame at a time, keep the largest face with
probability >= 0.95 and size >= 50 px, crop and save it.

Pipeline: ``deepfake_cli.data.extract.run_extract`` on the same videos and frames
(sequential decoding with ``grab()`` skipping, batched detection with
MTCNN's pyramid capped at ``--detect-max-side``, ``--workers`` processes).

Both run in this one process invocation on the 4 videos of
``../shared/data/ffpp_c23``; the script prints crops/s of both, the ratio, and
how well the boxes agree (IoU of the two boxes of each frame). Target: ratio
>= 3 on 2 cores with box IoU >= 0.9.

    python benchmarks/extract_bench.py                 # every 10th frame
    python benchmarks/extract_bench.py --every 25      # quicker
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = Path(os.environ.get("DFDETECT_SHARED", REPO.parent / "shared")) / "data" / "ffpp_c23"


def naive_extract(items, every, frames_per_video, out: Path) -> tuple[dict, int, float]:
    """The per-frame loop: seek, read, full-frame MTCNN, largest face, crop, save."""
    from facenet_pytorch import MTCNN

    from deepfake_cli.faces.detector import FaceFraming, crop_face
    from deepfake_cli.media.frames import sample_indices, video_info

    framing = FaceFraming(0.3, True)
    started = time.perf_counter()
    mtcnn = MTCNN(keep_all=True, device="cpu")
    boxes: dict[tuple[str, int], tuple[float, ...]] = {}
    crops = 0
    for item in items:
        info = video_info(item.path)
        indices = sample_indices(info, every=every, frames=frames_per_video)
        cap = cv2.VideoCapture(str(item.path))
        for index in indices:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, bgr = cap.read()
            if not ok:
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            with torch.inference_mode():
                found, probs = mtcnn.detect(rgb)
            if found is None:
                continue
            kept = [
                b for b, p in zip(found, probs)
                if p >= 0.95 and min(b[2] - b[0], b[3] - b[1]) >= 50
            ]  # fmt: skip
            if not kept:
                continue
            box = max(kept, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
            crop = crop_face(rgb, box, framing, size=224)
            path = out / item.method / f"{item.video_id}_f{index:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            boxes[(item.rel, index)] = tuple(float(v) for v in box)
            crops += 1
        cap.release()
    return boxes, crops, time.perf_counter() - started


def pipeline_extract(root: Path, args, out: Path) -> tuple[dict, int, float]:
    from deepfake_cli.config import load_config
    from deepfake_cli.data.extract import run_extract

    cfg = load_config(
        None,
        {
            "data.sample_every": args.every,
            "data.frames_per_video": args.frames_per_video,
            "data.extract_workers": args.workers,
            "data.detect_max_side": args.detect_max_side,
        },
        environ={},
    )
    started = time.perf_counter()
    summary = run_extract(cfg, out, root=root)
    seconds = time.perf_counter() - started
    boxes = {}
    with open(out / "metadata.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            boxes[(row["video"], int(row["frame"]))] = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
    return boxes, summary.crops, seconds


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="FF++-layout folder of videos")
    parser.add_argument("--every", type=int, default=10, help="keep every Nth frame (default 10)")
    parser.add_argument("--frames-per-video", type=int, default=None, help="K evenly spaced frames instead")
    parser.add_argument("--workers", type=int, default=2, help="pipeline worker processes (default 2)")
    parser.add_argument("--detect-max-side", type=int, default=640, help="pipeline detection cap, as data.detect_max_side (default 640)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the naive loop (default 2)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"benchmark data not found: {args.root}", file=sys.stderr)
        return 1
    if args.frames_per_video:
        args.every = None

    from deepfake_cli.data.layouts import discover_videos

    torch.set_num_threads(args.threads)
    _, items = discover_videos(args.root)
    with tempfile.TemporaryDirectory() as tmp:
        naive_boxes, naive_crops, naive_s = naive_extract(items, args.every, args.frames_per_video, Path(tmp) / "naive")
        fast_boxes, fast_crops, fast_s = pipeline_extract(args.root, args, Path(tmp) / "pipeline")

    common = sorted(set(naive_boxes) & set(fast_boxes))
    ious = np.array([iou(naive_boxes[k], fast_boxes[k]) for k in common]) if common else np.zeros(0)
    naive_rate, fast_rate = naive_crops / naive_s, fast_crops / fast_s
    sampling = f"--frames-per-video {args.frames_per_video}" if args.frames_per_video else f"--every {args.every}"
    print(f"videos: {len(items)} from {args.root} ({sampling}); cpu cores: {os.cpu_count()}")
    print(f"naive per-frame loop : {naive_crops:4d} crops in {naive_s:7.2f} s = {naive_rate:6.2f} crops/s")
    print(
        f"dfdetect extract     : {fast_crops:4d} crops in {fast_s:7.2f} s = {fast_rate:6.2f} crops/s "
        f"(workers {args.workers}, detect max side {args.detect_max_side})"
    )
    print(f"speed-up             : {fast_rate / naive_rate:.2f}x (target >= 3x)")
    if len(ious):
        print(
            f"box agreement        : {len(common)} frames with a crop in both, IoU mean {ious.mean():.3f}, "
            f"min {ious.min():.3f}, {np.mean(ious >= 0.9) * 100:.1f}% >= 0.9"
        )
    print(
        f"crops in one only    : naive {len(set(naive_boxes) - set(fast_boxes))}, "
        f"extract {len(set(fast_boxes) - set(naive_boxes))}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
