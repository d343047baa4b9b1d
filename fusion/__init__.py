"""Several functions in one processor: calls between them, the front door, workflows.

The pieces meet at one interface, ``fusion.calls.Caller``: a local dispatcher
(straight into a hosted function's pool) and a remote one (HTTP to another
processor) both answer ``call(name, event, timeout)`` with a ``RawResponse``,
so ``call_function`` and workflow steps never care where a function runs.
"""
