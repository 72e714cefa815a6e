"""``--ray``: predict, video and extract on a Ray cluster (``pip install 'dfdetect[ray]'``).

What runs where. The driver (the ``dfdetect`` process) expands the sources exactly as a
local run does, cuts them into tasks and hands them to a pool of Ray actors
(:class:`ray.util.ActorPool`). Each actor holds ONE face pipeline, loaded from the same
config and checkpoint as a local run, and computes with the same library functions a
local run uses (:func:`~deepfake_cli.inference.video.predict_paths`,
:func:`~deepfake_cli.inference.video.scan_video`,
:class:`~deepfake_cli.data.extract.VideoExtractor`). Results come back in input order and the
driver writes them through the same writers, so stdout, ``--out``, exit codes and error
rows are those of a local run. Extraction workers return each video's crops (JPEG bytes)
and manifest; the driver writes the crops and then the manifest, as the local extractor
does, so the resume guarantee is unchanged.

Workers read the inputs (and write ``--annotate`` videos) at the paths the driver sees,
in the driver's working folder: on a multi-node cluster the data must be on a shared
filesystem mounted at the same path everywhere.

Failures. Actors are created with ``max_restarts`` and ``max_task_retries`` set to
``ray.max_retries``: a worker process that dies is restarted and its task run again.
Past that, its inputs become error rows (extract: ``errors.csv``; a rerun redoes them)
and a fresh actor takes its place, never a silent gap. Ctrl-C (or any error) kills the
actors this run started and shuts down a local cluster it started.

Ray is imported only here, and only when ``--ray`` is given.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import shutil
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from deepfake_cli.config import Config
from deepfake_cli.errors import DfdetectError, InputFileError, OptionalDependencyError

INSTALL_HINT = "--ray needs Ray: pip install 'dfdetect[ray]'"
# Tasks handed to the pool per actor at a time: one running, one waiting for it.
TASKS_PER_ACTOR = 2
# Fresh actors started in place of dead ones before the run gives up, per pool actor.
REPLACEMENTS_PER_ACTOR = 3

Note = Callable[[str], None]


class RayClusterError(DfdetectError):
    """The Ray cluster cannot be reached, or its workers cannot start or keep dying."""


def import_ray() -> Any:
    """The ``ray`` module, or one clear line saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise OptionalDependencyError(INSTALL_HINT) from exc
    return ray


# --- the cluster connection -------------------------------------------------------------------


class RaySession:
    """Connects to (or starts) a cluster; ``close`` shuts down a connection it opened.

    A process already connected (``ray.init`` called by a caller, a test) keeps its
    connection: nothing is started and nothing is shut down.
    """

    def __init__(self, address: str | None):
        self.ray = import_ray()
        self.opened = False
        self.started_local = False
        if self.ray.is_initialized():
            return
        # Workers' log lines would be printed on the driver's stdout, among the results: they stay
        # in the cluster's session logs (/tmp/ray/session_latest/logs on each node).
        quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
        _ray_messages_to_stderr()
        handlers = _signal_handlers()
        try:
            if address is not None or os.environ.get("RAY_ADDRESS"):
                self.ray.init(address=address, **quiet)
            else:
                try:  # a cluster started here with 'ray start'
                    self.ray.init(address="auto", **quiet)
                except ConnectionError:
                    self.ray.init(include_dashboard=False, **quiet)
                    self.started_local = True
        except ConnectionError as exc:
            raise RayClusterError(f"cannot reach a Ray cluster at {address or os.environ.get('RAY_ADDRESS')}: {exc}") from None
        except (ValueError, RuntimeError) as exc:
            raise RayClusterError(f"cannot start or join a Ray cluster: {exc}") from None
        finally:
            _restore_signal_handlers(handlers)
        self.opened = True

    def close(self) -> None:
        if self.opened:
            self.opened = False
            self.ray.shutdown()  # stops the local cluster it started; leaves a joined one running

    def describe(self) -> str:
        if self.started_local:
            return "a local Ray cluster started for this run"
        try:
            return f"the Ray cluster at {self.ray.get_runtime_context().gcs_address}"
        except Exception:  # pragma: no cover - Ray Client connections have no GCS address here
            return "the Ray cluster"


def _ray_messages_to_stderr() -> None:
    """The driver prints the cluster's error messages ("(raylet) Task ... failed ...", a worker
    that died) on stdout, among the results: send them to stderr. Ray has no option for it
    (``log_to_driver`` covers worker logs only), so its printing function is wrapped."""
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover - another Ray layout: messages stay where Ray puts them
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "dfdetect_stderr", False):
        return

    def to_stderr(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.dfdetect_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


def _signal_handlers() -> dict[int, Any]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers: dict[int, Any]) -> None:
    """``ray.init`` installs its own SIGTERM handler (print and abort): put dfdetect's back,
    so that SIGTERM and Ctrl-C unwind the run (actors killed, partial files removed)."""
    import signal

    for sig, handler in handlers.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


def pool_size(ray: Any, cfg: Config, inputs: int | None) -> int:
    """Actors for the pool: ``ray.actors``, or as many as the cluster's CPUs (GPUs with
    ``ray.gpus_per_actor``) hold; never more than ``inputs``. An actor that does not fit
    at once waits for resources (another job's) and takes work when it starts."""
    rc = cfg.ray
    total = ray.cluster_resources()
    if rc.gpus_per_actor > 0:
        fits = int(total.get("GPU", 0) // rc.gpus_per_actor)
    elif rc.cpus_per_actor > 0:
        fits = int(total.get("CPU", 0) // rc.cpus_per_actor)
    else:
        fits = max(1, int(total.get("CPU", 1)))
    if rc.actors is not None and fits < rc.actors:
        # An actor the cluster can never place would hold its tasks forever.
        raise RayClusterError(
            f"--ray-actors {rc.actors} needs {rc.actors * rc.cpus_per_actor:g} CPUs and "
            f"{rc.actors * rc.gpus_per_actor:g} GPUs, the cluster has {total.get('CPU', 0):g} CPUs and "
            f"{total.get('GPU', 0):g} GPUs: {fits} actor(s) fit"
        )
    size = rc.actors if rc.actors is not None else fits
    if size < 1:
        raise RayClusterError(
            f"no actor fits the cluster ({total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs; "
            f"an actor needs {rc.cpus_per_actor:g} CPUs and {rc.gpus_per_actor:g} GPUs)"
        )
    return max(1, min(size, inputs)) if inputs is not None else size


# --- the actor pool ------------------------------------------------------------------------------


class WorkerPool:
    """``size`` actors of ``actor_cls`` in a :class:`ray.util.ActorPool`; :meth:`ordered` maps
    tasks over them and yields the results in input order."""

    def __init__(self, session: RaySession, actor_cls: type, args: tuple, cfg: Config, size: int):
        from ray.util import ActorPool

        ray = self.ray = session.ray
        rc = cfg.ray
        self.retries = rc.max_retries
        self._remote = ray.remote(actor_cls).options(
            num_cpus=rc.cpus_per_actor, num_gpus=rc.gpus_per_actor,
            max_restarts=rc.max_retries, max_task_retries=rc.max_retries,
        )  # fmt: skip
        self._args = args
        self.size = size
        self.actors: list[Any] = []
        self.replacements_left = REPLACEMENTS_PER_ACTOR * size
        try:
            for _ in range(size):
                self.actors.append(self._remote.remote(*args))
            infos = [self._checked(info) for info in ray.get([a.info.remote() for a in self.actors])]
        except BaseException:
            self.close()
            raise
        self.info = infos[0]
        self.pool = ActorPool(list(self.actors))

    def _checked(self, info: Any) -> dict[str, Any]:
        """An actor's ``info()``: the error its constructor met (model missing, ...) is raised here."""
        if isinstance(info, BaseException):
            raise info
        return info

    def _replace_dead_actor(self, exc: BaseException) -> None:
        if self.replacements_left <= 0:
            raise RayClusterError(f"Ray workers keep dying ({_short(exc)}); finished results are kept")
        self.replacements_left -= 1
        actor = self._remote.remote(*self._args)
        self.actors.append(actor)
        self.pool.push(actor)  # also hands it a waiting task

    def ordered(self, method: str, tasks: Iterable[Any], lost: Callable[[Any, str], Any]) -> Iterator[tuple[Any, Any]]:
        """``(task, result)`` in task order. A task whose worker died past its retries gets
        ``lost(task, reason)`` as its result, and a fresh actor replaces the dead one."""
        ray = self.ray
        submit = lambda actor, task: getattr(actor, method).remote(task)  # noqa: E731
        pending: deque[Any] = deque()
        source = iter(tasks)
        for task in itertools.islice(source, TASKS_PER_ACTOR * self.size):
            self.pool.submit(submit, task)
            pending.append(task)
        while pending:
            task = pending.popleft()
            try:
                result = self.pool.get_next()
            except ray.exceptions.RayActorError as exc:
                result = lost(task, f"Ray worker died ({_short(exc)}) after {self.retries} retries")
                if isinstance(exc, ray.exceptions.ActorDiedError):  # the pool dropped it
                    self._replace_dead_actor(exc)
            if isinstance(result, _Failure):
                raise result.exc
            for task_ in itertools.islice(source, 1):
                self.pool.submit(submit, task_)
                pending.append(task_)
            yield task, result

    def close(self) -> None:
        """Stop every actor this pool started (their running tasks with them)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []


def _short(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


@dataclasses.dataclass
class _Failure:
    """A typed dfdetect error met by a worker (not an input's error: those are records)."""

    exc: DfdetectError


# --- the actors -------------------------------------------------------------------------------


class _Actor:
    """Common set-up: the driver's working folder, threads, seed, stdout kept clean."""

    def __init__(self, cfg_dict: dict[str, Any], cwd: str):
        # Whatever a library prints must not reach the driver's stdout (Ray forwards it there).
        sys.stdout = sys.stderr
        self.error: DfdetectError | None = None
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative inputs and outputs mean what they mean to the driver
        self.cfg = Config.from_dict(cfg_dict)
        try:
            self.setup()
        except DfdetectError as exc:
            self.error = exc

    def setup(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _runtime(self) -> Any:
        from deepfake_cli.runtime import configure_threads, resolve_device, seed_everything

        rc = self.cfg.ray
        configure_threads(self.cfg.runtime.num_threads or max(1, int(rc.cpus_per_actor)))
        seed_everything(self.cfg.runtime.seed)
        return resolve_device(self.cfg.runtime.device)

    def info(self) -> Any:
        if self.error is not None:
            return self.error
        import platform

        return {"pid": os.getpid(), "node": platform.node(), **self.describe()}

    def describe(self) -> dict[str, Any]:
        return {}


class _PipelineActor(_Actor):
    """One classifier and face pipeline (as ``load_classifier`` + ``FacePipeline.from_config``)."""

    def setup(self) -> None:
        from deepfake_cli.inference.classifier import FaceClassifier
        from deepfake_cli.models.store import resolve_model
        from deepfake_cli.inference.pipeline import FacePipeline

        device = self._runtime()
        cfg = self.cfg
        # FacePipeline.from_config applies cfg.predict (threshold, band, test-time views).
        classifier = FaceClassifier.from_checkpoint(resolve_model(cfg.model.name), device=device)
        self.classifier = classifier
        self.device = device
        self.pipeline = FacePipeline.from_config(classifier, cfg)
        self._videos: Any = None

    def describe(self) -> dict[str, Any]:
        c = self.classifier
        return {"name": c.name, "arch": c.arch, "threshold": c.threshold, "device": str(self.device),
                "batch_size": self.pipeline.batch_size}

    def predict(self, paths: list[str]) -> Any:
        """``dfdetect predict`` records of these paths (a run of images, or one video)."""
        from deepfake_cli.inference.video import predict_paths

        if self.error is not None:
            return _Failure(self.error)
        try:
            return list(predict_paths(paths, self.pipeline, self.cfg))
        except DfdetectError as exc:
            return _Failure(exc)

    def video(self, task: tuple[str, str | None, bool]) -> Any:
        """One ``dfdetect video`` scan: ``(summary or None, per-frame rows, error or None)``."""
        from deepfake_cli.inference.video import scan_video, video_pipeline

        path, target, want_rows = task
        if self.error is not None:
            return _Failure(self.error)
        if self._videos is None:
            self._videos = video_pipeline(self.classifier, self.cfg)
        rows: list[dict[str, Any]] = []
        try:
            summary = scan_video(path, self._videos, self.cfg.video, annotate_path=target,
                                 on_row=rows.append if want_rows else None, keep_rows=False).summary
        except InputFileError as exc:
            return None, rows, str(exc)
        except DfdetectError as exc:
            return _Failure(exc)
        return summary, rows, None


class _ExtractActor(_Actor):
    """One :class:`VideoExtractor` writing into a scratch folder; its files go back to the driver."""

    def __init__(self, cfg_dict: dict[str, Any], cwd: str, settings: Any):
        self.settings = settings
        super().__init__(cfg_dict, cwd)

    def setup(self) -> None:
        from deepfake_cli.data.extract import VideoExtractor

        device = self._runtime()
        if self.cfg.runtime.device == "auto":  # this node's device, not the driver's
            self.settings = dataclasses.replace(self.settings, device=str(device))
        self.scratch = Path(tempfile.mkdtemp(prefix="dfdetect-ray-extract-"))
        self.extractor = VideoExtractor(self.settings, self.scratch)

    def describe(self) -> dict[str, Any]:
        return {"device": self.settings.device}

    def extract(self, item: Any) -> Any:
        """``(VideoResult, {crop relpath: JPEG bytes}, manifest text or None)`` for one video."""
        from deepfake_cli.data.extract import manifest_path

        if self.error is not None:
            return _Failure(self.error)
        try:
            result = self.extractor(item)
        except DfdetectError as exc:
            return _Failure(exc)
        crop_dir = self.scratch / "crops" / item.method / item.video_id
        crops: dict[str, bytes] = {}
        if crop_dir.is_dir():
            for file in sorted(crop_dir.iterdir()):
                crops[file.relative_to(self.scratch).as_posix()] = file.read_bytes()
        manifest = manifest_path(self.scratch, item)
        text = manifest.read_text(encoding="utf-8") if manifest.is_file() else None
        shutil.rmtree(crop_dir, ignore_errors=True)
        manifest.unlink(missing_ok=True)
        return result, crops, text

    def __del__(self) -> None:
        scratch = getattr(self, "scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


# --- the commands ------------------------------------------------------------------------------


def _shipped(cfg: Config) -> dict[str, Any]:
    """The config as the actors rebuild it: a model file named by an absolute path."""
    data = cfg.to_dict()
    name = data["model"]["name"]
    if name and Path(name).expanduser().is_file():
        data["model"]["name"] = str(Path(name).expanduser().resolve())
    return data


def _announce(note: Note | None, session: RaySession, pool: WorkerPool, what: str) -> None:
    if note is None:
        return
    info = pool.info
    if "name" in info:
        what = (f"model {info['name']} ({info['arch']}), threshold {info['threshold']:.3f}, device {info['device']}, "
                f"{what}")
    note(f"{what}: {pool.size} Ray actor(s) on {session.describe()}")


def _predict_tasks(paths: Iterable[Any], batch_size: int) -> Iterator[list[str]]:
    """The paths cut as a local run batches them: runs of images in chunks of ``batch_size``
    (restarting at each video, as ``predict_paths`` groups them), and each video alone."""
    from deepfake_cli.media.images import is_video_path

    chunk: list[str] = []
    for path in paths:
        if is_video_path(path):
            if chunk:
                yield chunk
                chunk = []
            yield [str(path)]
            continue
        chunk.append(str(path))
        if len(chunk) >= batch_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_records(paths: Iterable[Any], cfg: Config, note: Note | None = None) -> Iterator[dict[str, Any]]:
    """``dfdetect predict`` records of ``paths`` computed by Ray actors, in input order."""
    from deepfake_cli.media.images import is_video_path
    from deepfake_cli.inference.predict import error_record

    tasks = _predict_tasks(paths, cfg.predict.batch_size)
    session = RaySession(cfg.ray.address)
    pool = None
    try:
        # Look ahead a little to size the pool (3 photos do not need 16 actors).
        most = pool_size(session.ray, cfg, None)
        ahead = list(itertools.islice(tasks, TASKS_PER_ACTOR * most))
        size = min(most, len(ahead))
        pool = WorkerPool(session, _PipelineActor, (_shipped(cfg), os.getcwd()), cfg, size)
        _announce(note, session, pool, f"face detection {'on' if cfg.face.detect else 'off'}")
        model = pool.info["name"]

        def lost(task: list[str], reason: str) -> list[dict[str, Any]]:
            records = []
            for path in task:
                record = error_record(path, f"{path}: {reason}", model)
                records.append({**record, "kind": "video"} if is_video_path(path) else record)
            return records

        for _, records in pool.ordered("predict", itertools.chain(ahead, tasks), lost):
            yield from records
    finally:
        if pool is not None:
            pool.close()
        session.close()


class VideoScans:
    """``dfdetect video`` scans on Ray actors, all videos queued at once, taken in order.

    :meth:`scan` stands in for :func:`~deepfake_cli.inference.video.scan_video` in the local loop:
    it replays the worker's per-frame rows into ``on_row`` and raises the same
    :class:`InputFileError` a local scan would, so every writer and error row is the local one.
    """

    def __init__(self, paths: Sequence[Any], targets: Sequence[Any], cfg: Config, want_rows: bool,
                 note: Note | None = None):
        self.session = RaySession(cfg.ray.address)
        self.pool: WorkerPool | None = None
        try:
            size = pool_size(self.session.ray, cfg, len(paths))
            self.pool = WorkerPool(self.session, _PipelineActor, (_shipped(cfg), os.getcwd()), cfg, size)
            _announce(note, self.session, self.pool, f"face detection {'on' if cfg.face.detect else 'off'}")
        except BaseException:
            self.close()
            raise
        self.name = self.pool.info["name"]
        tasks = [(str(p), None if t is None else str(t), want_rows) for p, t in zip(paths, targets)]
        self._results = self.pool.ordered("video", tasks, lambda task, reason: (None, [], f"{task[0]}: {reason}"))

    def scan(self, path: Any, pipeline: Any = None, video_cfg: Any = None, annotate_path: Any = None,
             progress: Any = None, on_row: Callable[[dict[str, Any]], None] | None = None, keep_rows: bool = True) -> Any:
        from deepfake_cli.inference.video import VideoResult

        task, (summary, rows, error) = next(self._results)
        assert task[0] == str(path), (task[0], str(path))
        if on_row is not None:
            for row in rows:
                on_row(row)
        if error is not None:
            raise InputFileError(error)
        return VideoResult(str(path), summary, rows if keep_rows else [])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        self.session.close()

    def __enter__(self) -> "VideoScans":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ExtractRunner:
    """Stands in for ``extract._run_videos``: the videos go to Ray actors, and the driver
    writes each one's crops and then its manifest into ``out``, as the local extractor does.
    Connects to the cluster only when there is a video to do (a finished run resumes without)."""

    def __init__(self, cfg: Config, note: Note | None = None):
        import_ray()  # fail before any work when Ray is missing
        self.cfg = cfg
        self.note = note
        self.session: RaySession | None = None
        self.pool: WorkerPool | None = None

    def __call__(self, items: Sequence[Any], settings: Any, out: Path, workers: int) -> Iterator[Any]:
        from deepfake_cli.data.extract import ExtractedVideo, manifest_path
        from deepfake_cli.output import atomic_write_bytes, atomic_write_text

        if not items:
            return
        out = Path(out)
        self.session = RaySession(self.cfg.ray.address)
        size = pool_size(self.session.ray, self.cfg, len(items))
        self.pool = WorkerPool(self.session, _ExtractActor, (_shipped(self.cfg), os.getcwd(), settings), self.cfg, size)
        _announce(self.note, self.session, self.pool, f"extracting {len(items)} videos")
        by_rel = {item.rel: item for item in items}

        def lost(item: Any, reason: str) -> tuple[Any, dict, None]:
            return ExtractedVideo(item.rel, item.method, "error", reason=f"{item.path}: {reason}"), {}, None

        for item, (result, crops, manifest) in self.pool.ordered("extract", list(items), lost):
            assert by_rel[result.video] is item
            crop_dir = out / "crops" / item.method / item.video_id
            shutil.rmtree(crop_dir, ignore_errors=True)  # leftovers of an interrupted run
            if manifest is not None:
                crop_dir.mkdir(parents=True, exist_ok=True)  # there, even empty, as locally
                for rel, data in crops.items():
                    atomic_write_bytes(out / rel, data)
                # Last, as the local extractor: a video counts as done once its manifest is there.
                atomic_write_text(manifest_path(out, item), manifest)
            yield result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.session is not None:
            self.session.close()
            self.session = None

    def __enter__(self) -> "ExtractRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
