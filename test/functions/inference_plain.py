"""An inference handler written against the plain Nuclio API, as the seed system
documents it: the body is the protocol's JSON request (with model_name and
model_version), the result a JSON body in a context.Response."""

import json


def handler(context, event):
    request = json.loads(event.body)
    outputs = []
    for tensor in request["inputs"]:
        outputs.append({
            "name": "output_" + tensor["name"],
            "datatype": tensor["datatype"],
            "shape": tensor["shape"],
            "data": [x * 2 for x in tensor["data"]],
        })
    response = {
        "model_name": request["model_name"],
        "model_version": request["model_version"],
        "outputs": outputs,
    }
    return context.Response(body=json.dumps(response), content_type="application/json",
                            status_code=200)
