"""The two floors of the HTTP benchmark: the least that the processor's designs cost.

The processor parses HTTP in one process and runs the handler elsewhere: in one of
2 worker processes (process kind) or on one of 4 threads (thread kind). Each floor is
an aiohttp app on uvloop, written like the reference (http_peers.AIOHTTP_APP), that
does only that hop and nothing else a Nuclio processor does (no event object, no
JSON, no logging, no metrics): its req/s and CPU per request bound what the
processor's row can reach in Python on the same machine, so a target above a floor
is known to be out of reach for that design rather than a matter of more tuning.

- ``FLOOR_PROCESS_APP``: ``GET /`` waits for a free worker (each holds one request at
  a time, as in Nuclio's allocation), writes one frame of a 4-byte length and the
  method and path to its Unix socket, and answers with the frame the worker writes
  back. The workers are bare Python processes, the same file run with ``worker FD``:
  a blocking read of one frame, one write of ``hello`` in a frame, in a loop; they
  import nothing but socket and struct, and the app terminates them when it stops
  (or they read EOF if it is killed).
- ``FLOOR_THREAD_APP``: ``GET /`` awaits ``loop.run_in_executor(pool, hello)`` on a
  ``ThreadPoolExecutor(max_workers=4)`` with a plain sync ``hello()``.
"""

FLOOR_PROCESS_APP = """
import socket, struct, sys

HEADER = struct.Struct("!I")


def worker(fd):
    # One request at a time: read a whole frame (usually one recv), answer in one write.
    sock = socket.socket(fileno=fd)
    reply = HEADER.pack(5) + b"hello"
    while True:
        buffer = sock.recv(4096)
        if not buffer:
            return  # the app closed its end (stopped): nothing left to serve
        while len(buffer) < 4 or len(buffer) < 4 + HEADER.unpack_from(buffer)[0]:
            more = sock.recv(4096)
            if not more:
                return
            buffer += more
        sock.sendall(reply)


def serve(port, count):
    import asyncio, collections, subprocess
    import uvloop
    from aiohttp import web

    procs, workers = [], []  # the worker processes and their sockets' protocols
    idle = collections.deque()  # free workers
    queued = collections.deque()  # futures of requests waiting for a free worker

    def release(worker):
        # Hand the worker straight to the longest-waiting request, else mark it free.
        while queued:
            ticket = queued.popleft()
            if not ticket.done():
                ticket.set_result(worker)
                return
        idle.append(worker)

    class Worker(asyncio.Protocol):
        # One per worker socket; at most one request outstanding, so one future. The
        # worker is freed when its answer arrives, even if the request was cancelled.
        def __init__(self):
            self.buffer = b""
            self.waiter = None

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            buffer = self.buffer + data
            if len(buffer) >= 4:
                end = 4 + HEADER.unpack_from(buffer)[0]
                if len(buffer) >= end:
                    buffer, answer = buffer[end:], buffer[4:end]
                    if not self.waiter.done():
                        self.waiter.set_result(answer)
                    release(self)
            self.buffer = buffer

        def connection_lost(self, exc):
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(ConnectionError("worker gone"))

        def call(self, frame):
            self.waiter = asyncio.get_running_loop().create_future()
            self.transport.write(frame)
            return self.waiter

    async def hello(request):
        if idle:
            worker = idle.pop()
        else:
            ticket = asyncio.get_running_loop().create_future()
            queued.append(ticket)
            worker = await ticket  # handed over when a worker answers (release)
        path = f"{request.method} {request.path}".encode()
        answer = await worker.call(HEADER.pack(len(path)) + path)
        return web.Response(text=answer.decode())

    async def start_workers(app):
        loop = asyncio.get_running_loop()
        for _ in range(count):
            ours, theirs = socket.socketpair()
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL))
            theirs.close()
            _, protocol = await loop.create_unix_connection(Worker, sock=ours)
            workers.append(protocol)
            idle.append(protocol)

    async def stop_workers(app):
        # SIGTERM rather than EOF: uvloop closes the sockets only on a later loop turn.
        for worker in workers:
            worker.transport.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()

    app = web.Application()
    app.router.add_get("/", hello)
    app.on_startup.append(start_workers)
    app.on_cleanup.append(stop_workers)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if sys.argv[1] == "worker":
    worker(int(sys.argv[2]))
else:
    serve(int(sys.argv[1]), int(sys.argv[2]))
"""

FLOOR_THREAD_APP = """
import asyncio, sys
from concurrent.futures import ThreadPoolExecutor
import uvloop
from aiohttp import web

pool = ThreadPoolExecutor(max_workers=int(sys.argv[2]))


def hello():
    return "hello"


async def handle(request):
    return web.Response(text=await asyncio.get_running_loop().run_in_executor(pool, hello))

app = web.Application()
app.router.add_get("/", handle)
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""
