"""One handler for the status-page tests: camera frames pass through unchanged (as the
sink and the preview see them); HTTP requests answer /ok, or raise on /raise."""


def handler(context, event):
    if event.trigger.kind in ("mjpeg", "rtsp"):
        return context.Response(body=event.body, content_type=event.content_type)
    if event.path.endswith("/raise"):
        raise ValueError("boom on purpose")
    return {"ok": True}
