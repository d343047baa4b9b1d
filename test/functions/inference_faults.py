"""Misbehaving inference handlers, chosen by the request parameter ``mode``."""

import json
import time

import numpy as np


def handler(context, event):
    mode = event.fields["parameters"].get("mode", "ok")
    x = event.inputs.get("x")
    if mode == "raise":
        raise RuntimeError("secret internal detail")
    if mode == "status":
        return context.Response(body=json.dumps({"error": "input rejected by the model"}),
                                content_type="application/json", status_code=422)
    if mode == "sleep":
        time.sleep(float(event.fields["parameters"].get("seconds", 1.0)))
    if mode == "garbage":
        return ["not", "tensors"]
    if mode == "array":
        return np.asarray(x) + 1
    if mode == "json_list":
        return {"outputs": [{"name": "y", "datatype": "FP64", "shape": [len(x.ravel())],
                             "data": [float(v) for v in x.ravel()]}],
                "parameters": {"note": "json form"}}
    if mode == "body":
        return {"x_seen_in_body": json.loads(event.body)["inputs"][0]["data"]}
    return {"y": np.asarray(x) + 1, "z": np.zeros(2, dtype=np.int32)}
