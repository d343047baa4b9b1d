"""The two floors of the HTTP benchmark: the least that the processor's designs cost.

The processor parses HTTP in one process, with its lean server (httptools in an
asyncio protocol on uvloop, core/http1), and runs the handler elsewhere: in one of 2
worker processes (process kind) or on one of 4 threads (thread kind). Each floor is
that hop and nothing else a Nuclio processor does (no event object, no JSON, no
logging, no metrics, no keep-alive bookkeeping): a bare httptools protocol on uvloop
that answers ``GET /`` once the hop returns. Its req/s and CPU per request bound what
the processor's row can reach in Python on the same machine, so a target above a
floor is known to be out of reach for that design rather than a matter of tuning.

- process: the request waits for a free worker (each holds one request at a time,
  as in Nuclio's allocation), its method and path go in one frame of a 4-byte length
  to the worker's Unix socket, and the answer is the frame the worker writes back.
  The workers are bare Python processes, the same file run with ``worker FD``: a
  blocking read of one frame, one write of ``hello`` in a frame, in a loop; they
  import nothing but socket and struct, and end at EOF or SIGTERM.
- thread: the request awaits ``loop.run_in_executor(pool, hello)`` on a
  ``ThreadPoolExecutor(max_workers=4)`` with a plain sync ``hello()``.

Both are the one app below, ``floor_app.py MODE PORT COUNT``.
"""

FLOOR_APP = """
import asyncio, collections, signal, socket, struct, subprocess, sys

HEADER = struct.Struct("!I")


def worker(fd):
    # One request at a time: read a whole frame (usually one recv), answer in one write.
    sock = socket.socket(fileno=fd)
    reply = HEADER.pack(5) + b"hello"
    while True:
        buffer = sock.recv(4096)
        if not buffer:
            return
        while len(buffer) < 4 or len(buffer) < 4 + HEADER.unpack_from(buffer)[0]:
            more = sock.recv(4096)
            if not more:
                return
            buffer += more
        sock.sendall(reply)


def process_hop(count, procs):
    # Returns hello(method, path) -> awaitable answer, over `count` worker processes.
    idle, queued = collections.deque(), collections.deque()

    def release(worker):
        while queued:
            ticket = queued.popleft()
            if not ticket.done():
                ticket.set_result(worker)
                return
        idle.append(worker)

    class Worker(asyncio.Protocol):
        def __init__(self):
            self.buffer, self.waiter = b"", None

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

    async def start():
        loop = asyncio.get_running_loop()
        for _ in range(count):
            ours, theirs = socket.socketpair()
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL))
            theirs.close()
            _, protocol = await loop.create_unix_connection(Worker, sock=ours)
            idle.append(protocol)

    async def hello(method, path):
        if idle:
            worker = idle.pop()
        else:
            ticket = asyncio.get_running_loop().create_future()
            queued.append(ticket)
            worker = await ticket
        frame = f"{method} {path}".encode()
        worker.waiter = asyncio.get_running_loop().create_future()
        worker.transport.write(HEADER.pack(len(frame)) + frame)
        return await worker.waiter

    return start, hello


def thread_hop(count):
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(max_workers=count)

    def hello_sync():
        return b"hello"

    async def start():
        pass

    async def hello(method, path):
        return await asyncio.get_running_loop().run_in_executor(pool, hello_sync)

    return start, hello


def serve(mode, port, count):
    import httptools, uvloop
    procs = []
    start, hello = process_hop(count, procs) if mode == "process" else thread_hop(count)

    class HTTP(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.url = transport, b""
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data):
            self.parser.feed_data(data)

        def on_url(self, url):
            self.url += url

        def on_message_complete(self):
            method, self.url, path = self.parser.get_method().decode(), b"", self.url.decode()
            asyncio.ensure_future(self.answer(method, path))

        async def answer(self, method, path):
            body = await hello(method, path)
            self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain; charset=utf-8"
                                 b"\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))

    async def main():
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        await start()
        server = await loop.create_server(HTTP, "127.0.0.1", port, backlog=1024)
        await stop
        server.close()
        for proc in procs:
            proc.terminate()
            proc.wait()

    uvloop.run(main())


if sys.argv[1] == "worker":
    worker(int(sys.argv[2]))
else:
    serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""
