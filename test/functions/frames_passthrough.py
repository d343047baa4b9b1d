"""Returns each frame unchanged, as image/jpeg: what the MJPEG sink and the benchmark use."""


async def handler(context, event):
    return context.Response(body=event.body, content_type="image/jpeg")
