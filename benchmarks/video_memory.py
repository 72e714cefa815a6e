"""Peak memory of ``dfdetect video`` on a long 1080p video (target: a 10-minute 1080p
video stays under about 1.5 GB RSS).

No 10-minute 1080p clip ships with the test data, so the script makes one: the
1080p multi-face clip of ``../shared`` (105 frames, 25 fps) played forwards and
backwards until ``--minutes`` are filled, written with OpenCV's VideoWriter
(MPEG-4 Part 2) to a temporary folder (about 80 MB a minute; ``--video`` reuses
a file, ``--keep`` keeps the one made). It then runs ``dfdetect video`` on it
in a child process, CSV only or with ``--annotate``, and samples the child's
resident memory (``VmRSS``) every ``--interval`` seconds. Printed: the peak,
the median over the second and the last quarter of the run (the first holds
start-up; a leak shows as a last quarter above the second), wall time, and
the video summary's frame counts.
Linux only (reads ``/proc``).

    python benchmarks/video_memory.py                       # 10 minutes, CSV only
    python benchmarks/video_memory.py --annotate            # also writes the annotated copy
    python benchmarks/video_memory.py --minutes 2 --keep /tmp/long.mp4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFDETECT_SHARED", REPO.parent / "shared"))
SOURCE = SHARED / "data" / "videos" / "facenet_example.mp4"
TARGET_BYTES = 1.5 * 2**30


def make_long_video(source: Path, minutes: float, out: Path) -> dict:
    """``source`` played forwards and backwards until ``minutes`` are filled; returns its size and rate."""
    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{source}: no frames decoded")
    height, width = frames[0].shape[:2]
    count = int(round(minutes * 60 * fps))
    loop = frames + frames[::-1]  # no jump cut: faces move on smoothly at each turn
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {out}")
    for i in range(count):
        writer.write(loop[i % len(loop)])
    writer.release()
    return {"frames": count, "fps": fps, "width": width, "height": height}


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def run_scan(video: Path, workdir: Path, annotate: bool, every: int, model: str | None, interval: float) -> dict:
    cmd = [sys.executable, "-m", "deepfake_cli", "video", str(video), "--out", str(workdir / "frames.csv"),
           "--every", str(every), "--json"]
    if annotate:
        cmd += ["--annotate", str(workdir / "annotated.mp4")]
    if model:
        cmd += ["--model", model]
    samples: list[tuple[float, int]] = []
    start = time.perf_counter()
    # The summary (every track) can outgrow a pipe's buffer: the child writes to a file.
    with open(workdir / "summary.json", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        child = subprocess.Popen(cmd, stdout=out, stderr=err)
        while child.poll() is None:
            rss = rss_bytes(child.pid)
            if rss is not None:
                samples.append((time.perf_counter() - start, rss))
            time.sleep(interval)
    wall = time.perf_counter() - start
    if child.returncode not in (0, 3):  # 3: the video was called fake (--fail-on-fake is off, so not expected)
        raise SystemExit(f"dfdetect video exited with {child.returncode}:\n{(workdir / 'stderr.txt').read_text()[-2000:]}")
    if not samples:
        raise SystemExit("no memory samples: is /proc available?")
    summary = json.loads((workdir / "summary.json").read_text())
    summary = summary[0] if isinstance(summary, list) else summary
    quarter = max(1, len(samples) // 4)
    return {
        "annotate": annotate,
        "wall_s": round(wall, 1),
        "peak_mb": round(max(r for _, r in samples) / 2**20),
        "second_quarter_median_mb": round(statistics.median(r for _, r in samples[quarter : 2 * quarter]) / 2**20),
        "last_quarter_median_mb": round(statistics.median(r for _, r in samples[-quarter:]) / 2**20),
        "samples": len(samples),
        "frames": summary.get("frames"),
        "verdict": summary.get("verdict"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--source", type=Path, default=SOURCE, help="clip to loop (default: the shared 1080p multi-face clip)")
    parser.add_argument("--video", type=Path, help="scan this video instead of making one")
    parser.add_argument("--keep", type=Path, help="write the long video here and keep it")
    parser.add_argument("--annotate", action="store_true", help="also write the annotated video")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--model", help="checkpoint or shipped model (default: the default model)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dfdetect_mem_") as tmp:
        workdir = Path(tmp)
        video = args.video
        made = None
        if video is None:
            if not args.source.exists():
                raise SystemExit(f"{args.source} not found (set DFDETECT_SHARED or pass --source/--video)")
            video = args.keep or workdir / "long.mp4"
            t0 = time.perf_counter()
            made = make_long_video(args.source, args.minutes, video)
            print(f"made {video}: {made['width']}x{made['height']}, {made['frames']} frames at {made['fps']:g} fps "
                  f"({made['frames'] / made['fps'] / 60:.1f} min), {video.stat().st_size / 2**20:.0f} MB, "
                  f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        result = run_scan(video, workdir, args.annotate, args.every, args.model, args.interval)
    result["video"] = str(video) if args.video or args.keep else "(temporary)"
    result["made"] = made
    frames = result["frames"] or {}
    print(f"dfdetect video {'--annotate ' if args.annotate else ''}--every {args.every}: "
          f"{frames.get('decoded')} frames decoded, {frames.get('sampled')} sampled, {result['wall_s']} s")
    print(f"RSS peak {result['peak_mb']} MB (target <= {TARGET_BYTES / 2**20:.0f} MB: "
          f"{'met' if result['peak_mb'] * 2**20 <= TARGET_BYTES else 'NOT met'}); "
          f"median {result['second_quarter_median_mb']} MB over the second quarter of the run, "
          f"{result['last_quarter_median_mb']} MB over the last")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
