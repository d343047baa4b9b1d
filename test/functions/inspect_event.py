"""Echoes what the handler sees of its event and context, as JSON."""

import datetime
import os

import nuclio_sdk


def init_context(context):
    context.user_data.initialised = True
    context.user_data.calls = 0


def _describe(context, event):
    context.user_data.calls += 1
    body = event.body
    return {
        "body_type": type(body).__name__,
        "body": body if isinstance(body, (dict, list)) else (
            body.decode("utf-8", "replace") if isinstance(body, bytes) else body),
        "content_type": event.content_type,
        "method": event.method,
        "path": event.path,
        "url": event.url,
        "fields": event.fields,
        "header_x_test": event.get_header("x-TEST"),
        "id": event.id,
        "timestamp_is_datetime": isinstance(event.timestamp, datetime.datetime),
        "timestamp": event.timestamp.isoformat(),
        "trigger_kind": event.trigger.kind,
        "trigger_name": event.trigger.name,
        "worker_id": context.worker_id,
        "worker_id_type": type(context.worker_id).__name__,
        "context_trigger_name": context.trigger.name,
        "initialised": context.user_data.initialised,
        "calls": context.user_data.calls,
        "platform_kind": context.platform.kind,
        "env_custom": os.environ.get("CUSTOM_VAR"),
        "env_number": os.environ.get("NUMBER_VAR"),
        "env_function_name": os.environ.get("NUCLIO_FUNCTION_NAME"),
        "is_sdk_event": isinstance(event, nuclio_sdk.Event),
        "response_class_ok": context.Response is nuclio_sdk.Response,
        "pid": os.getpid(),
    }


def handler(context, event):
    return _describe(context, event)


async def init_context_async(context):  # not used by Nuclio; kept for symmetry
    init_context(context)


async def handler_async(context, event):
    return _describe(context, event)
