"""An async handler with an async init_context."""

import asyncio


async def init_context(context):
    await asyncio.sleep(0.01)
    context.user_data.ready = "async-init"


async def handler(context, event):
    await asyncio.sleep(float(event.fields.get("sleep", "0")))
    return {"init": context.user_data.ready, "worker_id": context.worker_id}
