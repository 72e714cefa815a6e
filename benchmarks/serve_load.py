"""Load test for ``dfdetect serve``: N requests from C concurrent clients to a real server.

Starts ``dfdetect serve`` on a free port of 127.0.0.1 (or targets ``--url``, which
must be a loopback address), warms it up, records each image's answer from
one serial request, then sends ``--requests`` POST /predict uploads from
``--concurrency`` clients at once. A request fails when it errors, times out,
is not 200, or returns a different score than the serial answer for the same
image (which would betray unsafe sharing of the model between threads). The
whole run is bounded by ``--time-limit``.

    python benchmarks/serve_load.py --model model.pt
    python benchmarks/serve_load.py --model model.pt --requests 200 --concurrency 16 --workers 2
    python benchmarks/serve_load.py --url http://127.0.0.1:8000   # a server already running

Prints failures and latency percentiles (p50/p90/p99); exits 1 on any failure.

Idle-socket scenario (instead of the load): ``--idle-sockets N`` opens N connections
to the server that never send a request (stalled clients), with the server's file
descriptors limited to ``--server-nofile`` (when we start it), checks that /health
still answers while they are open and that the server closes them within its
keep-alive timeout (``--timeout-keep-alive``, passed to the server we start):

    python benchmarks/serve_load.py --idle-sockets 250 --server-nofile 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from deepfake_cli.serve.local import LocalServer, require_loopback, wait_ready

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFDETECT_SHARED", REPO.parent / "shared"))
DEFAULT_IMAGES = [
    SHARED / "data" / "photos" / "faces" / "multiface.jpg",
    SHARED / "data" / "photos" / "faces" / "kate_siegel.jpg",
    *sorted((SHARED / "data" / "photos" / "mesonet").glob("*/*.jpg")),
]


@contextlib.contextmanager
def running_server(args: argparse.Namespace):
    """The URL of a server: ``--url`` as given (loopback only), or a ``dfdetect serve`` we start and always stop."""
    if args.url:
        try:
            url = require_loopback(args.url)
        except ValueError as exc:
            raise SystemExit(f"refusing {exc}") from None
        wait_ready(url, None, args.start_timeout)
        yield url
        return
    serve_args = ["--workers", str(args.workers), "--log-level", "warning"]
    if args.model:
        serve_args += ["--model", str(args.model)]
    if args.timeout_keep_alive is not None:
        serve_args += ["--timeout-keep-alive", str(args.timeout_keep_alive)]
    server = LocalServer(serve_args, start_timeout=args.start_timeout)
    with server as url:
        if args.server_nofile:
            import resource

            resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (args.server_nofile, args.server_nofile))
        yield url


IDLE_SOCKETS_MAX = 2000


def idle_sockets(url: str, args: argparse.Namespace) -> dict:
    """Open ``--idle-sockets`` connections that send nothing; /health must still answer, and
    the server must close them itself within its keep-alive timeout (loopback only, bounded)."""
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(url)
    n = min(args.idle_sockets, IDLE_SOCKETS_MAX)
    wait = (args.timeout_keep_alive or 5.0) + 5.0
    opened, sockets = 0, []
    start = time.monotonic()
    for _ in range(n):
        try:
            sockets.append(socket.create_connection((address.hostname, address.port), timeout=2))
            opened += 1
        except OSError:
            break
    health = []
    for _ in range(3):
        t = time.perf_counter()
        try:
            ok = httpx.get(f"{url}/health", timeout=10).status_code == 200
        except httpx.HTTPError:
            ok = False
        health.append((ok, round((time.perf_counter() - t) * 1000.0, 1)))
        time.sleep(0.5)
    closed = 0
    deadline = start + wait
    for s in sockets:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if s.recv(1) == b"":
                closed += 1
        except (TimeoutError, OSError):
            pass
        finally:
            s.close()
    closed_after_s = round(time.monotonic() - start, 1)
    try:
        after = httpx.get(f"{url}/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        after = False
    return {
        "idle_sockets": n, "opened": opened, "closed_by_server": closed, "closed_within_s": closed_after_s,
        "health_while_open": [{"ok": ok, "ms": ms} for ok, ms in health], "health_after": after,
        "server_nofile": args.server_nofile, "failures": int(not all(ok for ok, _ in health) or not after or closed < opened),
    }


def post(client: httpx.Client, url: str, name: str, data: bytes) -> dict:
    r = client.post(f"{url}/predict", files={"file": (name, data, "image/jpeg")})
    r.raise_for_status()
    return r.json()


def signature(answer: dict) -> tuple:
    return answer["status"], tuple(round(f["p_fake"], 5) for f in answer["faces"])


async def load(url: str, uploads: list[tuple[str, bytes]], expected: dict[str, tuple], args: argparse.Namespace) -> dict:
    latencies: list[float] = []
    server_ms: list[float] = []
    failures: dict[str, int] = {}
    next_index = 0
    transport_errors = 0
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)

    def fail(reason: str) -> None:
        failures[reason] = failures.get(reason, 0) + 1

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal next_index, transport_errors
        while next_index < args.requests:
            name, data = uploads[next_index % len(uploads)]
            next_index += 1
            start = time.perf_counter()
            try:
                r = await client.post(f"{url}/predict", files={"file": (name, data, "image/jpeg")})
            except httpx.HTTPError as exc:
                transport_errors += 1
                fail(type(exc).__name__)
                continue
            latencies.append(time.perf_counter() - start)
            if r.status_code != 200:
                fail(f"HTTP {r.status_code}")
                continue
            answer = r.json()
            server_ms.append(answer["elapsed_ms"])
            if signature(answer) != expected[name]:
                fail("answer differs from the serial one")

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as client:
        tasks = [asyncio.create_task(client_loop(client)) for _ in range(args.concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=args.time_limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - started
    answered = len(latencies)
    unfinished = args.requests - answered - transport_errors
    if unfinished:
        failures[f"not finished within --time-limit {args.time_limit:g} s"] = unfinished
    ms = np.asarray(latencies) * 1000.0
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "answered": answered,
        "failures": sum(failures.values()),
        "failure_reasons": failures,
        "wall_s": round(wall, 2),
        "throughput_rps": round(answered / wall, 2) if wall > 0 else None,
        "latency_ms": {
            "p50": round(float(np.percentile(ms, 50)), 1) if answered else None,
            "p90": round(float(np.percentile(ms, 90)), 1) if answered else None,
            "p99": round(float(np.percentile(ms, 99)), 1) if answered else None,
            "max": round(float(ms.max()), 1) if answered else None,
        },
        "server_ms_median": round(statistics.median(server_ms), 1) if server_ms else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", help="checkpoint or shipped model name for the server we start (default: the default model)")
    parser.add_argument("--url", help="target a running server instead (loopback only), e.g. http://127.0.0.1:8000")
    parser.add_argument("--image", action="append", type=Path, help="image(s) to upload, cycled (default: shared photos)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (when we start it)")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds for the whole load phase")
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--idle-sockets", type=int, default=0,
                        help=f"run the idle-socket scenario with this many sockets (at most {IDLE_SOCKETS_MAX}) instead of the load")
    parser.add_argument("--server-nofile", type=int, default=None, help="file-descriptor limit of the server we start")
    parser.add_argument("--timeout-keep-alive", type=float, default=None, help="the server's --timeout-keep-alive (when we start it)")
    args = parser.parse_args()
    if args.idle_sockets:
        with running_server(args) as url:
            report = idle_sockets(url, args)
        print(json.dumps(report, indent=2 if args.json else None))
        return 1 if report["failures"] else 0

    paths = args.image or [p for p in DEFAULT_IMAGES if p.is_file()]
    if not paths:
        raise SystemExit(f"no images: pass --image (the default ones live in {SHARED}, which is absent)")
    uploads = [(p.name, p.read_bytes()) for p in paths]

    with running_server(args) as url:
        with httpx.Client(timeout=args.request_timeout) as client:
            health = client.get(f"{url}/health").json()
            # Serial answers: the reference for every concurrent answer, and a warm-up.
            expected = {name: signature(post(client, url, name, data)) for name, data in uploads}
            serial = []
            for name, data in uploads:
                start = time.perf_counter()
                post(client, url, name, data)
                serial.append((time.perf_counter() - start) * 1000.0)
        report = asyncio.run(load(url, uploads, expected, args))
    report.update(model=health["model"], device=health["device"], images=len(uploads),
                  serial_latency_ms_mean=round(statistics.mean(serial), 1))

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lat = report["latency_ms"]
        print(f"model {report['model']} on {report['device']}; {report['images']} images cycled; "
              f"serial mean latency {report['serial_latency_ms_mean']} ms")
        print(f"{report['requests']} requests, {report['concurrency']} concurrent clients: "
              f"{report['answered']} answered, {report['failures']} failures {report['failure_reasons'] or ''}")
        print(f"wall {report['wall_s']} s, {report['throughput_rps']} req/s; latency ms "
              f"p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}; "
              f"server-side median {report['server_ms_median']} ms")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
