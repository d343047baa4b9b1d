"""The floors of the OpenInference gRPC rows: the least a Python KServe v2 gRPC server can
do, answering ``ModelInfer`` with the doubled tensor with no framework, model registry or
processor around it. Three, one per path a call of ours can take:

- ``grpc-floor``: grpc.aio (as KServe's model server and our processor use) doubling in
  its own loop, the floor of the async kind (the handler runs on the loop);
- ``hop-floor``: grpc.aio handing each tensor to one worker process over a socket pair
  and awaiting the doubled bytes, the floor of the process kind (one worker: one call
  at a time, as ``numWorkers: 1``);
- ``sync-hop-floor``: the same hop from grpc's synchronous server (4 threads, a lock
  around the worker), the design a process-kind front could switch to.

Only gRPC: the ratio of each to KServe says whether the gRPC targets (>= 1.5x KServe) are
reachable on that path; if a floor is under 1.5x, no server taking that path meets them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from test.support import free_port

# The heap setting the processor uses where tensors pass (runtime/memory.py): without
# it, the large row measures whether glibc raised its mmap threshold by itself.
PRELUDE = """
import ctypes, sys
import numpy as np
ctypes.CDLL(None).mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
ctypes.CDLL(None).mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD

def double(data):
    return (np.frombuffer(data, dtype=np.float32) * 2).tobytes()
"""

# A worker process forked before grpc is imported (grpc's threads do not survive a
# fork): length-prefixed tensor bytes in, doubled bytes out, one at a time.
WORKER = """
import os, socket, struct
FRAME = struct.Struct("<I")

def recv_exact(sock, size):
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if not n:
            raise EOFError
        got += n
    return buf  # numpy reads it as it is; protobuf needs bytes (the sync front converts)

def serve(sock):
    while True:
        try:
            (size,) = FRAME.unpack(recv_exact(sock, 4))
            out = double(recv_exact(sock, size))
        except EOFError:
            return
        sock.sendall(FRAME.pack(len(out)) + out)

def spawn_worker():
    ours, theirs = socket.socketpair()
    if os.fork() == 0:
        ours.close()
        serve(theirs)
        os._exit(0)
    theirs.close()
    return ours

worker = spawn_worker()
"""

SERVICE = """
import grpc
from tritonclient.grpc import service_pb2 as pb

def reply_to(request, out):
    reply = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
    reply.outputs.add(name="output0", datatype="FP32", shape=request.inputs[0].shape)
    reply.raw_output_contents.append(out)
    return reply

def add_service(server, port, infer):
    method = grpc.unary_unary_rpc_method_handler(
        infer, request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelInferResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": method}),))
    server.add_insecure_port(f"127.0.0.1:{port}")

OPTIONS = [("grpc.max_receive_message_length", 64 << 20),
           ("grpc.max_send_message_length", 64 << 20), ("grpc.so_reuseport", 0)]
"""

AIO_MAIN = """
import asyncio, uvloop

async def main(port):
    server = grpc.aio.server(options=OPTIONS)
    add_service(server, port, await handler())
    await server.start()
    await server.wait_for_termination()

uvloop.install()
asyncio.run(main(int(sys.argv[1])))
"""

BARE = PRELUDE + SERVICE + """
async def handler():
    async def infer(request, context):
        return reply_to(request, double(request.raw_input_contents[0]))
    return infer
""" + AIO_MAIN

AIO_HOP = PRELUDE + WORKER + SERVICE + """
async def handler():
    worker.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=worker)
    one_at_a_time = asyncio.Lock()

    async def infer(request, context):
        data = request.raw_input_contents[0]
        async with one_at_a_time:
            writer.write(FRAME.pack(len(data)) + data)
            (size,) = FRAME.unpack(await reader.readexactly(4))
            out = await reader.readexactly(size)
        return reply_to(request, out)
    return infer
""" + AIO_MAIN

SYNC_HOP = PRELUDE + WORKER + SERVICE + """
import threading
from concurrent import futures
one_at_a_time = threading.Lock()

def infer(request, context):
    data = request.raw_input_contents[0]
    with one_at_a_time:
        worker.sendall(FRAME.pack(len(data)) + data)
        (size,) = FRAME.unpack(recv_exact(worker, 4))
        out = bytes(recv_exact(worker, size))
    return reply_to(request, out)

server = grpc.server(futures.ThreadPoolExecutor(4), options=OPTIONS)
add_service(server, int(sys.argv[1]), infer)
server.start()
server.wait_for_termination()
"""

# name in --servers -> (label, server script)
FLOORS = {
    "grpc-floor": ("floor: bare grpc.aio", BARE),
    "hop-floor": ("floor: grpc.aio + worker process", AIO_HOP),
    "sync-hop-floor": ("floor: sync grpc x4 + worker process", SYNC_HOP),
}


def launch_grpc_floor(workdir: Path, name: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The floor server ``name`` (a key of FLOORS) on a free loopback port:
    (process, gRPC port, log)."""
    port = free_port()
    script = workdir / f"{name}.py"
    script.write_text(FLOORS[name][1])
    log = workdir / f"{name}.log"
    proc = subprocess.Popen([sys.executable, str(script), str(port)],
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
