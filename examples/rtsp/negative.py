"""Turns each video frame into its negative: raw frames in, raw frames out."""

import nuclio_sdk
import numpy as np


def handler(context: nuclio_sdk.Context, event: nuclio_sdk.Event) -> nuclio_sdk.Response:
    height, width = event.fields["height"], event.fields["width"]
    frame = np.frombuffer(event.body, np.uint8).reshape(height, width, 3)
    return context.Response(body=(255 - frame).tobytes(),
                            content_type="application/octet-stream", status_code=200)
