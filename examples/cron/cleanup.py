"""Runs on a schedule; in kube mode each tick arrives over HTTP from a CronJob."""


def handler(context, event):
    origin = event.get_header("x-nuclio-invoke-trigger") or event.trigger.kind
    context.logger.info_with("Cleaning up", origin=origin, body=event.body)
    return {"cleaned": True, "origin": origin}
