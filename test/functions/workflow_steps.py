"""Workflow steps that say they were called: each appends a JSON line (its role, the
body it got, the traceparent it saw) to the file named by ``WORKFLOW_RECORD``, so a
test can tell which steps ran, in which order, with which input."""

import json
import os


def _record(role, event):
    body = event.body if isinstance(event.body, bytes) else json.dumps(event.body).encode()
    headers = {k.lower(): v for k, v in event.headers.items()}
    line = {"role": role, "body": body.decode(errors="replace"),
            "content_type": event.content_type, "traceparent": headers.get("traceparent"),
            "method": event.method, "path": event.path}
    with open(os.environ["WORKFLOW_RECORD"], "a") as out:
        out.write(json.dumps(line) + "\n")
    return body


def upper(context, event):
    """Step one: the text in capitals."""
    return context.Response(body=_record("upper", event).upper(), content_type="text/x-upper",
                            status_code=200)


def refuse(context, event):
    """A step that fails: 409 with a JSON reason (the chain must stop here)."""
    _record("refuse", event)
    return context.Response(body={"error": "step two says no"}, status_code=409,
                            headers={"X-Refused": "yes"})


def exclaim(context, event):
    """The last step: appends "!" and answers 201 (the workflow must keep that status)."""
    return context.Response(body=_record("exclaim", event) + b"!", content_type="text/x-loud",
                            status_code=201, headers={"X-Last": "exclaim"})
