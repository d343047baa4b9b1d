"""Rotates a JPEG by 180 degrees: the first step of the image chain.

An ordinary Nuclio function: it runs unchanged in Nuclio, alone in a processor,
or fused with the others. The output is deterministic (fixed quality and
subsampling, no metadata) so that every way of running the chain can be
compared byte for byte.
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
    image.transpose(Image.Transpose.ROTATE_180).save(out, "JPEG", quality=90, subsampling=2)
    return context.Response(body=out.getvalue(), content_type="image/jpeg", status_code=200)
