"""The load generator of the OpenInference benchmark, run as ``python -c CLIENT <cfg>`` in
its own process: N requests in flight for a fixed time after a warm-up, the request
encoded once before the clock starts (REST through aiohttp, gRPC through grpc.aio with
tritonclient's messages) and the first answer checked, so the servers and not the
client's tensor encoding are measured."""

CLIENT = """
import asyncio, json, sys, time
import numpy as np

def rest_body(data, binary):
    tensor = {"name": "input0", "shape": list(data.shape), "datatype": "FP32"}
    if binary:
        blob = data.tobytes()
        tensor["parameters"] = {"binary_data_size": len(blob)}
    else:
        tensor["data"] = data.reshape(-1).tolist()
    header = json.dumps({"inputs": [tensor], "outputs": [
        {"name": "output0", "parameters": {"binary_data": binary}}]}).encode()
    if not binary:
        return header, {"Content-Type": "application/json"}
    return header + blob, {"Inference-Header-Content-Length": str(len(header)),
                           "Content-Type": "application/octet-stream"}

def rest_output(body, headers):
    size = headers.get("Inference-Header-Content-Length")
    if size is None:
        out = json.loads(body)["outputs"][0]
        return np.array(out["data"], dtype=np.float32).reshape(out["shape"])
    out = json.loads(body[:int(size)])["outputs"][0]
    return np.frombuffer(body[int(size):], dtype=np.float32).reshape(out["shape"])

async def main(cfg):
    shape = cfg["shape"]
    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    if cfg["protocol"] == "grpc":
        import grpc
        from tritonclient.grpc import service_pb2
        message = service_pb2.ModelInferRequest(model_name=cfg["model"])
        message.inputs.add(name="input0", datatype="FP32", shape=shape)
        message.outputs.add(name="output0")
        message.raw_input_contents.append(data.tobytes())
        body = message.SerializeToString()
        channel = grpc.aio.insecure_channel(cfg["url"], options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)])
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

        async def call():
            return await infer(body)

        def output(answer):
            reply = service_pb2.ModelInferResponse.FromString(answer)
            return np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).reshape(
                list(reply.outputs[0].shape))
        close = channel.close
    else:
        import aiohttp
        body, headers = rest_body(data, cfg["binary"])
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            limit=cfg["concurrency"]))
        url = f"http://{cfg['url']}/v2/models/{cfg['model']}/infer"

        async def call():
            async with session.post(url, data=body, headers=headers) as reply:
                answer = await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"{reply.status}: {answer[:200]!r}")
                return answer, reply.headers

        def output(answer):
            return rest_output(*answer)
        close = session.close
    first = output(await call())
    assert np.allclose(first, data * 2), "wrong answer"
    latencies, errors = [], 0
    start = time.perf_counter() + cfg["warmup"]
    end = start + cfg["seconds"]

    async def drive():
        nonlocal errors
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                await call()
            except Exception:
                errors += 1
                continue
            if t0 >= start:
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(drive() for _ in range(cfg["concurrency"])))
    await close()
    latencies.sort()
    n = len(latencies)
    print(json.dumps({"requests": n, "rps": n / cfg["seconds"], "errors": errors,
                      "p50_ms": latencies[n // 2] * 1000 if n else None,
                      "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else None}))

asyncio.run(main(json.loads(sys.argv[1])))
"""
