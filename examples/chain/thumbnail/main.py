"""Shrinks a JPEG to fit in 128x128 pixels, keeping its aspect ratio: the last step
of the image chain.

An ordinary Nuclio function (see transpose/main.py for why the output is
deterministic). ``THUMBNAIL_SIZE`` in ``spec.env`` changes the bound.
"""

import io
import os

from PIL import Image, UnidentifiedImageError

SIZE = int(os.environ.get("THUMBNAIL_SIZE", "128"))


def handler(context, event):
    try:
        image = Image.open(io.BytesIO(event.body))
        image.load()
    except (UnidentifiedImageError, OSError, TypeError) as exc:
        return context.Response(body={"error": f"expected a JPEG body ({type(exc).__name__})"},
                                content_type="application/json", status_code=400)
    image.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, subsampling=2)
    return context.Response(body=out.getvalue(), content_type="image/jpeg", status_code=200)
