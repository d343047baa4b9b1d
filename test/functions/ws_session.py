"""Per-connection state kept in context.user_data, driven by connect/disconnect events."""


async def init_context(context):
    context.user_data.sessions = {}  # connection_id -> messages counted
    context.user_data.closed = []


async def handler(context, event):
    which = event.get_header("X-Nuclio-WebSocket-Event")
    connection_id = event.fields["connection_id"]
    sessions = context.user_data.sessions
    if which == "connect":
        sessions[connection_id] = 0
        return {"event": "connect", "connection_id": connection_id}
    if which == "disconnect":
        context.user_data.closed.append({
            "connection_id": connection_id, "count": sessions.pop(connection_id),
            "close_code": event.fields["close_code"], "message_num": event.fields["message_num"],
        })
        return "not delivered: the client is gone"
    text = event.body.decode()
    if text == "stats":
        return {"open": sorted(sessions), "closed": context.user_data.closed}
    sessions[connection_id] += 1
    return f"{sessions[connection_id]}:{text}"
