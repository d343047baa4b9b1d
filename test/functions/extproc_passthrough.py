"""Changes nothing: the ext_proc benchmark's handler."""


async def handler(context, event):
    return None
