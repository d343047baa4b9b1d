"""The Open Inference Protocol (KServe v2 / Triton) on the worker side.

Requests are decoded and responses encoded in the worker that runs the handler
(in parallel across process workers, never on the processor's event loop), so a
trigger only routes bytes. Handlers see numpy arrays in ``event.inputs`` and
may return numpy arrays; the JSON body of the protocol is built only if a
handler reads ``event.body``.
"""
