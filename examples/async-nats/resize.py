"""A stand-in for slow work that callers would rather queue than wait for."""


def handler(context, event):
    return {"resized": len(event.body or b"")}
