"""A plain Nuclio function: runs unchanged on Nuclio and on this processor."""

import nuclio_sdk


def init_context(context):
    context.user_data.greeting = "Hello"


def handler(context, event):
    name = event.fields.get("name") or "world"
    context.logger.info_with("Greeting", name=name)
    return context.Response(body=f"{context.user_data.greeting}, {name}!\n",
                            headers={"x-worker": context.worker_id},
                            content_type="text/plain", status_code=200)


# Nuclio users often type-check against the SDK; keep the import exercised.
_ = nuclio_sdk.Response
