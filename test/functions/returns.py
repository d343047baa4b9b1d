"""Every handler return type in Nuclio's table, chosen by the request path."""

import nuclio_sdk


def _output(context, event):
    kind = event.path.strip("/")
    if kind == "str":
        return "text body"
    if kind == "bytes":
        return b"\x00\x01binary"
    if kind == "dict":
        return {"a": 1, "nested": {"b": [1, 2]}}
    if kind == "list":
        return [1, "two", {"three": 3}]
    if kind == "tuple_str":
        return 201, "created"
    if kind == "tuple_dict":
        return 202, {"accepted": True}
    if kind == "context_response":
        return context.Response(body="teapot", headers={"X-Custom": "yes", "X-Count": 7},
                                content_type="text/x-custom", status_code=418)
    if kind == "response_dict":
        return context.Response(body={"k": "v"}, status_code=200)
    if kind == "sdk_response":
        return nuclio_sdk.Response(body=b"raw", content_type="application/x-raw",
                                   status_code=203, headers={"X-Float": 1.5})
    if kind == "none":
        return None
    if kind == "int":
        return 42
    if kind == "exception_with_response":
        raise nuclio_sdk.ExceptionWithResponse(409, body="conflict")
    if kind == "bad_status":
        return context.Response(body="x", status_code=1234)
    if kind == "unsupported":
        return object()
    return "unknown"


def handler(context, event):
    return _output(context, event)


async def handler_async(context, event):
    return _output(context, event)
