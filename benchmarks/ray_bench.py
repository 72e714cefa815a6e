"""Local against ``--ray`` on one machine: what Ray costs at start-up and per file.

Both runs happen in this one invocation, on the same files and the same model:

- predict: N face photos of ``../shared/data/dfdc_faces/real`` (face detection on),
  locally (one process, torch on every core) and on a local Ray cluster started here
  (one actor per core, one torch thread each; records through the same ordered pool
  ``dfdetect predict --ray`` uses);
- extract: the 4 videos of ``../shared/data/ffpp_c23`` (``--frames-per-video``),
  locally with ``--workers 1`` and ``--workers 2`` (processes) and on Ray.

Printed: start-up (local: model load; Ray: cluster start, then actors loading the
model), steady-state seconds per file, the Ray/local ratios, the per-actor rate, the
driver's own cost per record (what caps a cluster's throughput) and a projection of
throughput with nodes from the measured per-actor rate. The records of both runs are
checked to be equal.

    python benchmarks/ray_bench.py              # 200 photos, 8 frames per video
    python benchmarks/ray_bench.py --photos 60  # quicker
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("DFDETECT_SHARED", REPO.parent / "shared"))
PHOTOS = SHARED / "data" / "dfdc_faces" / "real"
FFPP = SHARED / "data" / "ffpp_c23"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--frames-per-video", type=int, default=8)
    parser.add_argument("--skip-extract", action="store_true")
    args = parser.parse_args()
    if not PHOTOS.is_dir():
        print(f"needs the shared data: {PHOTOS} is absent (see ../shared/README.md)", file=sys.stderr)
        return 1
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

    import torch

    from deepfake_cli.cli.common import load_classifier
    from deepfake_cli.config import load_config
    from deepfake_cli.output import RecordWriter
    from deepfake_cli.inference.pipeline import FacePipeline
    from deepfake_cli.inference.predict import IMAGE_COLUMNS, flat_image_row
    from deepfake_cli.inference.video import predict_paths

    cores = os.cpu_count() or 1
    every = sorted(PHOTOS.glob("*.jpg"))
    # The first files warm each side up (first MTCNN/torch calls), untimed; then N timed.
    warm, paths = every[:64], every[64 : 64 + args.photos]
    cfg = load_config(None, {"ray.enabled": True}, environ={})
    load = os.getloadavg()[0]
    print(f"# {len(paths)} photos (after 64 untimed warm-up photos each side) of {PHOTOS.relative_to(SHARED)}, {cores} cores, torch {torch.__version__}, "
          f"load average {load:.1f} at the start")

    # -- local --------------------------------------------------------------------------
    t0 = time.perf_counter()
    pipeline = FacePipeline.from_config(load_classifier(cfg), cfg)
    local_start = time.perf_counter() - t0
    list(predict_paths(warm, pipeline, cfg))
    t0 = time.perf_counter()
    local = list(predict_paths(paths, pipeline, cfg))
    local_run = time.perf_counter() - t0
    # One thread, as each actor runs: the per-worker baseline that isolates Ray's own cost.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    local_one = list(predict_paths(paths, pipeline, cfg))
    local_one_run = time.perf_counter() - t0
    torch.set_num_threads(threads)
    assert local_one == local

    # The driver's own cost per record: writing it (JSON Lines) as the CLI does.
    buf = io.StringIO()
    t0 = time.perf_counter()
    for _ in range(5):
        with RecordWriter("jsonl", IMAGE_COLUMNS, buf, flatten=flat_image_row) as writer:
            for record in local:
                writer.write(record)
    write_per_record = (time.perf_counter() - t0) / (5 * len(local))

    # -- Ray ----------------------------------------------------------------------------
    import ray

    from deepfake_cli.cluster import ray_pool as dr

    t0 = time.perf_counter()
    session = dr.RaySession(None)
    ray_init = time.perf_counter() - t0
    try:
        size = dr.pool_size(ray, cfg, None)
        t0 = time.perf_counter()
        pool = dr.WorkerPool(session, dr._PipelineActor, (dr._shipped(cfg), os.getcwd()), cfg, size)
        ray_actors = time.perf_counter() - t0
        try:
            # One warm-up task per actor (32 photos each), untimed.
            list(pool.ordered("predict", dr._predict_tasks(warm, cfg.predict.batch_size), _no_loss))
            tasks = dr._predict_tasks(paths, cfg.predict.batch_size)
            t0 = time.perf_counter()
            on_ray = [r for _, records in pool.ordered("predict", tasks, _no_loss) for r in records]
            ray_run = time.perf_counter() - t0
        finally:
            pool.close()
        # One actor against local on one thread: the same compute, so the difference is
        # Ray's own cost per file (task dispatch, pickling records, the ordered pool).
        one = dr.WorkerPool(session, dr._PipelineActor, (dr._shipped(cfg), os.getcwd()), cfg, 1)
        try:
            list(one.ordered("predict", dr._predict_tasks(warm[:32], cfg.predict.batch_size), _no_loss))
            t0 = time.perf_counter()
            on_one = [r for _, records in one.ordered("predict", dr._predict_tasks(paths, cfg.predict.batch_size), _no_loss)
                      for r in records]
            ray_one_run = time.perf_counter() - t0
        finally:
            one.close()
        assert on_one == local

        assert on_ray == local, "Ray records differ from the local ones"
        n = len(paths)
        local_per, ray_per = local_run / n, ray_run / n
        per_actor_rate = n / ray_one_run
        print("\n## predict (face detection on)\n")
        print("| | local (1 process, torch on every core) | Ray (local cluster) | Ray / local |")
        print("|---|---|---|---|")
        print(f"| start-up | {local_start:.2f} s (model and MTCNN load) | {ray_init + ray_actors:.2f} s "
              f"({ray_init:.2f} s cluster start + {ray_actors:.2f} s {size} actors loading the model) | "
              f"{(ray_init + ray_actors) / local_start:.1f}x |")
        print(f"| per photo (steady state) | {1000 * local_per:.1f} ms | {1000 * ray_per:.1f} ms ({size} actors x 1 thread) | "
              f"{ray_per / local_per:.2f}x |")
        print(f"| per photo, one worker | {1000 * local_one_run / n:.1f} ms (1 thread) | "
              f"{1000 * ray_one_run / n:.1f} ms (1 actor) | {ray_one_run / local_one_run:.2f}x |")
        print(f"| {n} photos, start-up included | {local_start + local_run:.1f} s | "
              f"{ray_init + ray_actors + ray_run:.1f} s | {(ray_init + ray_actors + ray_run) / (local_start + local_run):.2f}x |")
        print(f"\nrecords equal: yes ({n}, all four runs). Per-actor rate (1 actor alone): {per_actor_rate:.1f} photos/s; "
              f"Ray's own cost: {1000 * (ray_one_run - local_one_run) / n:+.1f} ms per photo. "
              f"Driver cost per record (writing JSON Lines): {1e6 * write_per_record:.0f} us, "
              f"i.e. at most {1 / write_per_record:,.0f} records/s through one driver.")
        print("\nProjection from the measured per-actor rate (one actor per core; inputs on a shared "
              "filesystem that keeps up):\n")
        print("| nodes x cores | actors | photos/s | 1 million photos (minutes) |")
        print("|---|---|---|---|")
        cap = 1 / write_per_record
        for nodes, per_node in ((1, cores), (4, 16), (16, 16), (64, 16)):
            actors = nodes * per_node
            rate = min(actors * per_actor_rate, cap)
            print(f"| {nodes} x {per_node} | {actors} | {rate:,.0f}{' (driver-bound)' if rate == cap else ''} | "
                  f"{1e6 / rate / 60:,.1f} |")

        if not args.skip_extract and FFPP.is_dir():
            extract_bench(cfg, session, args.frames_per_video)
    finally:
        session.close()
    return 0


def _no_loss(task, reason):
    raise RuntimeError(f"a Ray worker died during the benchmark: {reason}")


def extract_bench(cfg, session, frames_per_video: int) -> None:
    from deepfake_cli.cluster import ray_pool as dr
    from deepfake_cli.config import load_config
    from deepfake_cli.data.extract import run_extract

    overrides = {"data.frames_per_video": frames_per_video, "data.detect_max_side": 640}
    print(f"\n## extract (4 FF++ c23 videos, {frames_per_video} frames each, detection at 640 px)\n")
    print("| run | seconds | crops | s per video | vs --workers 1 |")
    print("|---|---|---|---|---|")
    base = None
    results = {}
    for name, extra in (("local --workers 1", {}), ("local --workers 2", {"data.extract_workers": 2}),
                        ("--ray (2 actors)", {"ray.enabled": True})):
        c = load_config(None, {**overrides, **extra}, environ={})
        with tempfile.TemporaryDirectory() as out:
            runner = dr.ExtractRunner(c) if c.ray.enabled else None
            t0 = time.perf_counter()
            try:
                summary = run_extract(c, out, root=FFPP, videos_runner=runner)
            finally:
                if runner is not None:
                    runner.close()
            seconds = time.perf_counter() - t0
            metadata = (Path(out) / "metadata.csv").read_text()
        results[name] = metadata
        base = base or seconds
        print(f"| {name} | {seconds:.1f} | {summary.crops} | {seconds / summary.videos:.2f} | {seconds / base:.2f}x |")
    same = len(set(results.values())) == 1
    print(f"\nmetadata.csv equal in the three runs: {'yes' if same else 'NO'}. The Ray run includes starting its "
          "actors (the cluster was already up).")


if __name__ == "__main__":
    raise SystemExit(main())
