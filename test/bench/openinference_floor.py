"""The floor of the OpenInference gRPC rows: the least a Python KServe v2 gRPC server can
do, grpc.aio (as KServe's model server and our processor use) answering ``ModelInfer``
with the doubled tensor, with no framework, model registry or processor around it.

Only gRPC: its ratio to KServe says whether the gRPC targets (>= 1.5x KServe) are
reachable for any server built on grpc.aio; if this floor is under 1.5x, they are not.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from test.support import free_port

FLOOR_SERVER = """
import asyncio, ctypes, sys
import grpc, numpy as np, uvloop
from tritonclient.grpc import service_pb2 as pb

# The heap setting the processor uses where tensors pass (runtime/memory.py): without
# it, the large row measures whether glibc raised its mmap threshold by itself.
ctypes.CDLL(None).mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
ctypes.CDLL(None).mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD

async def infer(request, context):
    tensor = request.inputs[0]
    doubled = np.frombuffer(request.raw_input_contents[0], dtype=np.float32) * 2
    reply = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
    reply.outputs.add(name="output0", datatype="FP32", shape=tensor.shape)
    reply.raw_output_contents.append(doubled.tobytes())
    return reply

async def main(port):
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                      ("grpc.max_send_message_length", 64 << 20),
                                      ("grpc.so_reuseport", 0)])
    method = grpc.unary_unary_rpc_method_handler(
        infer, request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelInferResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": method}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()

uvloop.install()
asyncio.run(main(int(sys.argv[1])))
"""


def launch_grpc_floor(workdir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The floor server on a free loopback port: (process, gRPC port, log)."""
    port = free_port()
    (workdir / "grpc_floor.py").write_text(FLOOR_SERVER)
    log = workdir / "grpc_floor.log"
    proc = subprocess.Popen([sys.executable, str(workdir / "grpc_floor.py"), str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    return proc, port, log


def grpc_listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
    time.sleep(0.2)  # accepting is not yet serving: let grpc finish its start
    return True
