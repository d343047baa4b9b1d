"""A trivial async handler for the stream benchmarks: answers the body it got."""


async def handler(context, event):
    return event.body
