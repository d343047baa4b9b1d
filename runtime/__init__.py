"""The Nuclio-compatible function runtime: handlers, events, responses, workers.

It knows nothing about triggers: a trigger hands it ``RawEvent``s and gets
``RawResponse``s back from a ``WorkerPool``.
"""
