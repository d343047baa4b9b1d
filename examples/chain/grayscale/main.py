"""Turns a JPEG black and white: the second step of the image chain.

An ordinary Nuclio function (see transpose/main.py for why the output is
deterministic).
"""

import io

from PIL import Image, UnidentifiedImageError


def handler(context, event):
    try:
        image = Image.open(io.BytesIO(event.body))
        image.load()
    except (UnidentifiedImageError, OSError, TypeError) as exc:
        return context.Response(body={"error": f"expected a JPEG body ({type(exc).__name__})"},
                                content_type="application/json", status_code=400)
    out = io.BytesIO()
    image.convert("L").save(out, "JPEG", quality=90)
    return context.Response(body=out.getvalue(), content_type="image/jpeg", status_code=200)
