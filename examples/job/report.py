"""A job: builds a small report once; the processor exits 0 on success, 1 on failure."""

import os


def handler(context, event):
    context.logger.info_with("Building report", day=event.fields.get("day"))
    return {"title": os.environ.get("REPORT_TITLE", "report"), "day": event.fields.get("day"),
            "format": event.body.get("format") if isinstance(event.body, dict) else None}
