"""The real NVIDIA Triton Inference Server, from the ``tritonserver`` binary that the nvidia-pytriton wheel carries.

The wheel ships the server (2.51), the python backend library and one backend stub per Python version, and the
shared libraries they link against. :func:`ensure_backend_dir` lays out a ``--backend-directory`` with the
python backend and the stub of the running interpreter; :class:`TritonServer` runs the server with explicit
model control on a given model repository.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.local.errors import RuntimeMissing
from infra.local.process import LocalService, Port

COMPLETE_MARKER = ".complete"


def pytriton_root() -> Path:
    """The ``pytriton/tritonserver`` folder of the installed wheel."""
    try:
        import pytriton
    except ImportError as exc:
        raise RuntimeMissing("nvidia-pytriton", "pip install 'inferloop[local]' (`make setup` does)") from exc
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise RuntimeMissing("tritonserver binary", f"expected it under {root}/bin; reinstall nvidia-pytriton")
    return root


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def ensure_backend_dir(cache_dir: Path) -> Path:
    """A Triton backend folder holding the python backend and this interpreter's stub (idempotent)."""
    root = pytriton_root()
    backends = cache_dir / f"triton-backends-py{_python_tag()}"
    if (backends / COMPLETE_MARKER).exists():
        return backends
    stub = root / "python_backend_stubs" / _python_tag() / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeMissing(
            f"python backend stub for Python {_python_tag()}", "nvidia-pytriton ships stubs for 3.8 to 3.13"
        )
    staging = backends.with_name(backends.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(root / "backends" / "python", staging / "python", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, staging / "python" / "triton_python_backend_stub")
    (staging / COMPLETE_MARKER).write_text(_python_tag())
    shutil.rmtree(backends, ignore_errors=True)
    staging.rename(backends)
    return backends


@dataclass(frozen=True)
class GrpcTls:
    """TLS on Triton's gRPC endpoint: its certificate and key, and a CA to require client certificates from."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None  # mutual TLS: clients must present a certificate this CA signed

    def arguments(self) -> list[str]:
        args = ["--grpc-use-ssl=true", f"--grpc-server-cert={self.cert_file}", f"--grpc-server-key={self.key_file}"]
        if self.client_ca_file is not None:
            args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={self.client_ca_file}"]
        return args


class TritonServer(LocalService):
    """``tritonserver`` on a model repository, with HTTP, gRPC and metrics ports and explicit model control."""

    name = "triton"

    def __init__(
        self,
        *,
        model_repository: Path,
        backend_dir: Path,
        log_path: Path,
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        load_models: Sequence[str] = ("*",),
        start_timeout_s: float = 120.0,
        port_env_vars: Mapping[str, str] | None = None,
        grpc_tls: GrpcTls | None = None,
    ) -> None:
        super().__init__(log_path)
        self.grpc_tls = grpc_tls
        self.model_repository, self.backend_dir = model_repository, backend_dir
        self.host = host
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.load_models = list(load_models)
        self._start_timeout_s = start_timeout_s
        self._port_env_vars = dict(port_env_vars or {})

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def start_timeout_s(self) -> float:
        return self._start_timeout_s

    @property
    def marker(self) -> str:
        return f"--model-repository={self.model_repository}"

    def ports(self) -> Sequence[Port]:
        env = self._port_env_vars
        return [
            Port("http", self.host, self.http_port, env.get("http_port")),
            Port("grpc", self.host, self.grpc_port, env.get("grpc_port")),
            Port("metrics", self.host, self.metrics_port, env.get("metrics_port")),
        ]

    def prepare(self) -> None:
        self.model_repository.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        cmd = [
            str(pytriton_root() / "bin" / "tritonserver"),
            f"--backend-directory={self.backend_dir}",
            "--model-control-mode=explicit",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            # One broken model must not take the server (and every other model) down with it.
            "--exit-on-error=false",
            "--exit-timeout-secs=10",
        ]
        cmd += [f"--load-model={name}" for name in self.load_models]
        if self.grpc_tls is not None:
            cmd += self.grpc_tls.arguments()
        cmd.append(self.marker)  # last: the marker that tells this server's process apart
        return cmd

    def environment(self) -> Mapping[str, str]:
        root = pytriton_root()
        libs = root.parent.parent / "nvidia_pytriton.libs"
        python_lib = sysconfig.get_config_var("LIBDIR") or str(Path(sys.base_prefix) / "lib")
        return {
            # The stub links against the wheel's CUDA runtime stand-ins and against libpython.
            "LD_LIBRARY_PATH": f"{libs}:{python_lib}",
            # The stub's embedded interpreter ignores PYTHONPATH; it finds its prefix from the first `python3`
            # on PATH. This environment's bin folder first makes that prefix our virtualenv, so models import
            # numpy, onnxruntime and the rest from here.
            # (The stub runs an isolated interpreter: PYTHONPATH and PYTHONDONTWRITEBYTECODE have no effect, so a
            # `__pycache__` does appear next to model.py. Explicit model control never polls, so it is harmless.)
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def is_ready(self) -> bool:
        return triton_ready(self.http_url)


def triton_ready(http_url: str) -> bool:
    """Ready when ``/v2/health/ready`` answers 200."""
    return http_ok(f"{http_url}/v2/health/ready")


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether a GET of ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own local server
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
