"""Asynchronous invocation: OpenFaaS's ``/async-function/<name>`` contract, durably.

A call is accepted (202) only once it is stored; a dispatcher runs stored calls on
a function's worker pool, retries them by policy, keeps dead letters, and a
callback sender reports each final outcome. The store is chosen in config
(SQLite embedded by default, NATS JetStream for replicas) behind one interface
(``invocations.store.CallStore``), one store per processor, one queue per function,
so that a front door serving several functions reuses the store and dispatcher
unchanged. This layer sits below the triggers and above media/core/runtime.
"""
