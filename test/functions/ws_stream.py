"""Reports the stream windows the websocket trigger hands over, so a test can check them."""

import hashlib


def handler(context, event):
    if event.content_type == "text/plain":
        return "text:" + event.body.decode()
    return {
        "len": len(event.body),
        "offset": event.fields["stream_offset"],
        "message_num": event.fields["message_num"],
        "sha256": hashlib.sha256(event.body).hexdigest(),
    }
