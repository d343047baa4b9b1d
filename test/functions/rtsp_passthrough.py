"""Sends each frame or audio chunk on unchanged, and logs its fields (the tests read them)."""

import nuclio_sdk


def handler(context: nuclio_sdk.Context, event: nuclio_sdk.Event) -> nuclio_sdk.Response:
    fields = dict(event.fields)
    fields["size"] = len(event.body)
    fields["content_type"] = event.content_type
    context.logger.info_with("rtsp event", **fields)
    return context.Response(body=event.body, content_type=event.content_type, status_code=200)
