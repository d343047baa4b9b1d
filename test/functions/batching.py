"""A Nuclio batch handler: a list of events in, a list of responses out."""


def handler(context, batch):
    size = len(batch)
    return [context.Response(body=f"{event.body.decode()}:{size}", event_id=event.id)
            for event in reversed(batch)]
