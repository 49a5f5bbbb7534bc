"""The local llama.cpp teacher: a llama.cpp server that never outlives the engine that started it.

Guarantee: the server (`xllamacpp`, llama.cpp's OpenAI-compatible HTTP server as a wheel) listens on
127.0.0.1 on a free port, answers `/health` before the first request, and is gone when the run ends —
normally, on an exception, on Ctrl-C, and when the engine process is killed outright (SIGKILL).

It runs in a child process, not inside the engine:

- a child can always be stopped: SIGTERM, then SIGKILL after a grace period, even when llama.cpp is
  stuck in a long decode (an in-process C++ server cannot be interrupted from Python);
- a crash or abort inside llama.cpp (a GGML assert, out of memory) ends the server, not the engine:
  the teacher's requests fail, the samples in flight are quarantined with the reason, and nothing
  the checkpoint already holds is at risk;
- llama.cpp's own log goes to its own file (`llamacpp-server.log` in the work folder), not the console.

The price is the link to the parent, which the child keeps two ways: it reads its stdin, a pipe only
the parent holds open, and exits when that pipe closes (the kernel closes it whatever ends the
parent, SIGKILL included, on every POSIX system); on Linux it also asks for SIGKILL when the parent
dies (`PR_SET_PDEATHSIG`, armed only when the parent spawns it from its main thread, because the
signal follows the spawning *thread*). It runs in its own session, so a Ctrl-C in the terminal reaches
the engine only: the engine stops its samples first, then the server.

`served_teacher(cfg)` is what a run uses: for `teacher.kind: llamacpp` it starts the server (or, with
`base_url` set, uses that running llama.cpp server), reads the model's name from `/v1/models` (the
GGUF file's name, given to the server as its alias) and whether it takes images from `/props`, and
yields the teacher config the OpenAI teacher runs with.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from generation.orphans import die_with_parent
from generation.errors import MmatError

if TYPE_CHECKING:  # the child process imports this module too: it must stay light
    from generation.config import TeacherConfig

log = logging.getLogger("mmat.teacher")

INSTALL_HINT = "pip install 'mmat-1m[local]' (the xllamacpp wheel: llama.cpp with its HTTP server)"
READY_PREFIX = "mmat-llamacpp-ready "
STOP_GRACE_S = 15.0
LOG_TAIL_CHARS = 1500


class LlamaCppError(MmatError, RuntimeError):
    """The server could not start or answer (one line: what failed and what to do)."""


@dataclass
class ServerSettings:
    """What the child process needs to start llama.cpp (JSON on its command line)."""

    model_path: str
    alias: str
    n_ctx: int  # per request (one slot); the server gets n_ctx * parallel
    parallel: int = 1
    threads: int = 1
    mmproj_path: Optional[str] = None
    parent_pid: int = 0
    parent_death_signal: bool = False


@dataclass
class ServerInfo:
    """What a running llama.cpp server says about itself."""

    model: str
    vision: Optional[bool]  # None: the server does not say (not llama.cpp, or no /props)
    n_ctx: Optional[int]  # per request


def default_threads() -> int:
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def model_alias(model_path: str) -> str:
    """The name rows carry as `teacher.model`: the GGUF file's name without `.gguf`
    (`SmolLM2-135M-Instruct.Q4_1`), which names the model and its quantisation as the user knows it."""
    name = Path(model_path).name
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


def settings_for(cfg: "TeacherConfig") -> ServerSettings:
    from generation.config import ConfigError

    path = Path(cfg.model_path or "")
    if not path.is_file():
        raise ConfigError(f"teacher.model_path {cfg.model_path!r}: no such GGUF file")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ConfigError(f"teacher.model_path {cfg.model_path!r} is not a GGUF file (llama.cpp needs one)")
    if cfg.mmproj_path and not Path(cfg.mmproj_path).is_file():
        raise ConfigError(f"teacher.mmproj_path {cfg.mmproj_path!r}: no such file")
    return ServerSettings(model_path=str(path.resolve()), alias=model_alias(str(path)), n_ctx=cfg.n_ctx,
                          parallel=cfg.parallel, threads=cfg.threads or default_threads(),
                          mmproj_path=str(Path(cfg.mmproj_path).resolve()) if cfg.mmproj_path else None)


# --------------------------------------------------------------------------------------------------
# The engine's side
# --------------------------------------------------------------------------------------------------
class LlamaCppServer:
    """Start with `start()` (or `with`), stop with `stop()`; `base_url` is the OpenAI base URL.

    `stop()` is idempotent and also runs at interpreter exit, for a caller that forgot it."""

    def __init__(self, settings: ServerSettings, log_path: Optional[Path] = None,
                 startup_timeout_s: float = 300.0) -> None:
        self.settings = settings
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout_s = startup_timeout_s
        self.url: Optional[str] = None
        self.pid: Optional[int] = None
        self._proc: Optional[subprocess.Popen] = None
        self._log_file: Any = None

    @property
    def base_url(self) -> str:
        if self.url is None:
            raise LlamaCppError("the llama.cpp server is not running")
        return f"{self.url}/v1"

    def __enter__(self) -> "LlamaCppServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "LlamaCppServer":
        import importlib.util
        import tempfile

        from generation.config import ConfigError

        if importlib.util.find_spec("xllamacpp") is None:
            raise ConfigError(f"teacher.kind llamacpp needs the xllamacpp package: {INSTALL_HINT}")
        settings = ServerSettings(**{**asdict(self.settings), "parent_pid": os.getpid(),
                                     "parent_death_signal": threading.current_thread() is threading.main_thread()})
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")
        else:
            self._log_file = tempfile.NamedTemporaryFile(prefix="llamacpp-server-", suffix=".log")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "generation.teachers.llamacpp", json.dumps(asdict(settings))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log_file,
            start_new_session=True,  # a terminal Ctrl-C reaches the engine, which then stops the server
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")) if p)},
        )
        self.pid = self._proc.pid
        atexit.register(self.stop)
        try:
            self.url = self._wait_ready()
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        log.info("llama.cpp server: %s on %s (pid %d; n_ctx %d per request, %d parallel, %d threads%s)",
                 settings.alias, self.url, self.pid, settings.n_ctx, settings.parallel, settings.threads,
                 ", mmproj" if settings.mmproj_path else "")
        return self

    def _wait_ready(self) -> str:
        """The child's one ready line on stdout: `mmat-llamacpp-ready {"url": ...}`."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout_s
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=0.2):
                    chunk = os.read(self._proc.stdout.fileno(), 4096)
                    if not chunk:
                        break  # the child closed stdout: it ended
                    buffer += chunk
                    for raw in buffer.split(b"\n")[:-1]:  # complete lines only
                        line = raw.decode("utf-8", "replace")
                        if line.startswith(READY_PREFIX):
                            return json.loads(line[len(READY_PREFIX):])["url"]
                elif self._proc.poll() is not None:
                    break
        try:
            self._proc.wait(timeout=10 if time.monotonic() < deadline else 0.1)  # stdout closed: it is ending
        except subprocess.TimeoutExpired:
            raise LlamaCppError(f"the llama.cpp server did not start within {self.startup_timeout_s:.0f} s "
                                f"(teacher.startup_timeout_s){self._log_tail()}") from None
        raise LlamaCppError(f"the llama.cpp server exited with code {self._proc.wait()} while starting"
                            f"{self._log_tail()}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise LlamaCppError(f"the llama.cpp server exited with code {self._proc.returncode}{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:  # 503 while the model loads
                last = str(exc)
            time.sleep(0.1)
        raise LlamaCppError(f"the llama.cpp server at {self.url} was not healthy within "
                            f"{self.startup_timeout_s:.0f} s ({last})")

    def _log_tail(self) -> str:
        """The server log's last error lines (or last lines), for a start that failed."""
        if self._log_file is None:
            return ""
        try:
            self._log_file.flush()
            with open(self._log_file.name, "rb") as reader:
                reader.seek(max(0, os.fstat(reader.fileno()).st_size - LOG_TAIL_CHARS))
                tail = reader.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        errors = [line for line in lines if " E " in f" {line} " or "error" in line.lower()]
        shown = " | ".join((errors or lines)[-3:])
        return f" ({shown})" if shown else ""

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # the child's watchdog sees EOF and stops the server
            except OSError:
                pass
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("llama.cpp server (pid %d) did not stop within %.0f s; killing it", proc.pid,
                            STOP_GRACE_S)
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            log.info("llama.cpp server (pid %d) stopped", proc.pid)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.url = None


def _get_json(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
        return json.loads(reply.read())


def probe_server(base_url: str, timeout_s: float = 10.0) -> ServerInfo:
    """The served model's name (`/v1/models`), and, from llama.cpp's `/props`, whether it takes images
    and the context of one request. Raises LlamaCppError when the server does not answer."""
    root = base_url.rstrip("/")
    root = root[: -len("/v1")] if root.endswith("/v1") else root
    try:
        listing = _get_json(f"{root}/v1/models", timeout_s)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LlamaCppError(f"cannot list the models of the llama.cpp server at {root}: {exc}") from None
    models = [m.get("id") for m in listing.get("data") or [] if isinstance(m, dict) and m.get("id")]
    if not models:
        raise LlamaCppError(f"the llama.cpp server at {root} lists no model")
    vision = n_ctx = None
    try:
        props = _get_json(f"{root}/props", timeout_s)
        modalities = props.get("modalities")
        if isinstance(modalities, dict) and "vision" in modalities:
            vision = bool(modalities["vision"])
        n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        pass  # not llama.cpp (or /props off): the first refusal of an image decides instead
    return ServerInfo(model=str(models[0]), vision=vision, n_ctx=int(n_ctx) if n_ctx else None)


def local_teacher_config(cfg: "TeacherConfig", base_url: str) -> "TeacherConfig":
    """The teacher config a run uses with this llama.cpp server: its base URL, the served model's name,
    the vision mode (`auto` resolved here, once, with one log line), no USD prices unless configured,
    and no more requests in flight than the server has slots (queued requests would time out)."""
    info = probe_server(base_url)
    updates: dict[str, Any] = {"base_url": base_url, "model": info.model,
                               "max_concurrency": min(cfg.max_concurrency, cfg.parallel)}
    if "prices" not in cfg.model_fields_set:
        updates["prices"] = {"prompt_per_1m": 0.0, "completion_per_1m": 0.0}
    if cfg.vision == "auto" and info.vision is not None:
        updates["vision"] = info.vision
        if not info.vision:
            log.warning("teacher %s takes no images (llama.cpp reports no vision%s): text-only mode, the images "
                        "reach it only through the operators (caption, OCR, faces, boxes)", info.model,
                        "" if cfg.base_url else "; set teacher.mmproj_path for a vision model")
    elif cfg.vision is True and info.vision is False:
        log.warning("teacher.vision is true but llama.cpp reports that %s takes no images: expect refusals",
                    info.model)
    return type(cfg).model_validate({**cfg.model_dump(), **updates})


@contextmanager
def served_teacher(cfg: "TeacherConfig", log_path: Optional[Path] = None) -> Iterator["TeacherConfig"]:
    """The run's teacher config, with a llama.cpp server running for as long as the block runs when
    `teacher.kind` is `llamacpp` (and no `base_url`); any other kind passes through unchanged."""
    if cfg.kind != "llamacpp":
        yield cfg
        return
    if cfg.base_url:
        yield local_teacher_config(cfg, cfg.base_url)
        return
    with LlamaCppServer(settings_for(cfg), log_path=log_path, startup_timeout_s=cfg.startup_timeout_s) as server:
        yield local_teacher_config(cfg, server.base_url)


# --------------------------------------------------------------------------------------------------
# The child process: `python -m generation.teachers.llamacpp '<settings JSON>'`
# --------------------------------------------------------------------------------------------------
def _stop_when_stdin_closes(stop: threading.Event) -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    stop.set()


def _params(settings: ServerSettings) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = settings.model_path
    params.model_alias = {settings.alias}
    if settings.mmproj_path:
        params.mmproj.path = settings.mmproj_path
    params.n_parallel = settings.parallel
    params.n_ctx = settings.n_ctx * settings.parallel  # llama.cpp splits n_ctx over the slots
    params.hostnames = ["127.0.0.1"]  # loopback only (the default, said out loud)
    params.port = 0  # a free port, chosen by the OS; the server reports it
    params.cpuparams.n_threads = settings.threads
    params.cpuparams_batch.n_threads = settings.threads
    return params


def _serve(settings: ServerSettings) -> int:
    die_with_parent(settings.parent_pid, arm=settings.parent_death_signal)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=_stop_when_stdin_closes, args=(stop,), daemon=True, name="parent-watch").start()
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever llama.cpp prints goes to the log, never into the ready channel
    import xllamacpp

    server = xllamacpp.Server(_params(settings))
    ready.write(READY_PREFIX + json.dumps({"url": server.listening_address, "pid": os.getpid()}) + "\n")
    ready.close()
    while not stop.wait(0.5):
        pass
    # A stop that hangs (a decode that does not return) must not keep the process alive.
    deadline = threading.Timer(STOP_GRACE_S - 5, lambda: os._exit(0))
    deadline.daemon = True
    deadline.start()
    del server
    return 0


if __name__ == "__main__":  # pragma: no cover - the child process
    sys.exit(_serve(ServerSettings(**json.loads(sys.argv[1]))))
