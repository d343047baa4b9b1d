"""KServe's Python model server as an OpenInference benchmark peer.

The same "double the FP32 input" model as the other servers, written as a user of
KServe would: a ``kserve.Model`` subclass with an ``async predict`` taking and
returning KServe's v2 types, served by ``ModelServer`` with one uvicorn worker
(one process, one model instance: as MLServer with ``parallel_workers: 0``). The
response carries the requested outputs, whose ``binary_data`` KServe honours: REST
answers in the binary tensor extension when asked (binary inputs are parsed too),
gRPC in raw contents (a numpy output becomes raw contents; ``use_binary_outputs``
is left unset because KServe 0.21's ``to_grpc`` then fails on numpy data). KServe
is installed on first use into its own venv, /opt/kserve-venv: its pins (fastapi,
protobuf, numpy) are not ours to share; ``ensure_venv`` does that for MLServer too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from test.support import free_port

KSERVE_VENV = Path("/opt/kserve-venv")

# Run by the venv's python with the REST and gRPC ports as arguments. KServe 0.21
# binds REST to 0.0.0.0 and gRPC to [::] with no setting for it; the two wrappers
# narrow both to loopback and change nothing else. Per-request logging (uvicorn's
# access log, the gRPC logging interceptor, latency lines) is lowered to warnings,
# as the processor and MLServer run here.
SERVER = """
import logging, sys
import grpc.aio, uvicorn
from kserve import Model, ModelServer
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

class DoubleModel(Model):
    def __init__(self):
        super().__init__("double")
        self.ready = True

    async def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        out = InferOutput(name="output0", shape=list(x.shape), datatype="FP32", data=x * 2)
        return InferResponse(response_id=payload.id or "", model_name=self.name,
                             infer_outputs=[out], requested_outputs=payload.request_outputs)

class LoopbackConfig(uvicorn.Config):
    def __init__(self, app, **kwargs):
        super().__init__(app, **{**kwargs, "host": "127.0.0.1"})

def loopback_grpc_server(*args, _server=grpc.aio.server, **kwargs):
    kwargs["options"] = [*kwargs.get("options", ()), ("grpc.so_reuseport", 0)]
    server = _server(*args, **kwargs)
    add = server.add_insecure_port
    server.add_insecure_port = lambda address: add("127.0.0.1:" + address.rsplit(":", 1)[1])
    return server

uvicorn.Config = LoopbackConfig
grpc.aio.server = loopback_grpc_server
server = ModelServer(http_port=int(sys.argv[1]), grpc_port=int(sys.argv[2]), workers=1,
                     enable_latency_logging=False)
for name in ("kserve", "kserve.trace", "uvicorn.access"):
    logging.getLogger(name).setLevel(logging.WARNING)
server.start([DoubleModel()])
"""


def ensure_venv(venv: Path, package: str) -> Path:
    """The python of ``venv``, with ``package`` installed into it on first use (both
    model-server peers live in venvs of their own). The marker is written last, so an
    interrupted install is redone."""
    marker = venv / f".{package}-installed"
    if not marker.exists():
        print(f"Installing {package} into its own venv, {venv} (first run only)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", package], check=True,
                       timeout=900)
        marker.touch()
    return venv / "bin" / "python"


def venv_version(venv: Path, package: str) -> str:
    """A package's version in a peer's venv (not importable from the benchmark's python)."""
    done = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.metadata as m,"
                           " sys; print(m.version(sys.argv[1]))", package],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def launch_kserve(workdir: Path) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    """Starts KServe on fresh ports: (process, REST port, gRPC port, log file)."""
    folder = workdir / "kserve"
    folder.mkdir()
    (folder / "double_server.py").write_text(SERVER)
    rest, grpc_port = free_port(), free_port()
    log = folder / "kserve.log"
    python = ensure_venv(KSERVE_VENV, "kserve")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(python), str(folder / "double_server.py"), str(rest),
                                 str(grpc_port)], cwd=folder, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, rest, grpc_port, log
