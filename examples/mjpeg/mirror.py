"""Mirrors each camera frame left to right: JPEG -> numpy (PyAV) -> JPEG.

Each worker has its own decoder and encoder (``context.user_data``), made once in
``init_context``; the handler returns the new JPEG, which the trigger's sink serves.
"""

import fractions

import av
import numpy as np


def init_context(context):
    context.user_data.decoder = av.CodecContext.create("mjpeg", "r")
    context.user_data.encoder = None


def _encoder(context, width, height):
    encoder = context.user_data.encoder
    if encoder is None or (encoder.width, encoder.height) != (width, height):
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
        encoder.time_base = fractions.Fraction(1, 30)
        encoder.options = {"qscale": "4"}
        context.user_data.encoder = encoder
    return encoder


def handler(context, event):
    frames = context.user_data.decoder.decode(av.Packet(event.body))
    if not frames:
        return None  # nothing to send: counted as sink-skipped
    image = frames[0].to_ndarray(format="rgb24")
    mirrored = np.ascontiguousarray(image[:, ::-1])
    encoder = _encoder(context, mirrored.shape[1], mirrored.shape[0])
    frame = av.VideoFrame.from_ndarray(mirrored, format="rgb24").reformat(format="yuvj420p")
    packets = encoder.encode(frame)
    return context.Response(body=b"".join(bytes(p) for p in packets),
                            content_type="image/jpeg")
