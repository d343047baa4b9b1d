"""NATS triggers: core subjects (``nats``) and JetStream pull consumers (``nats-jetstream``).

``connection`` holds what both share (the URL and credentials, Nuclio's reconnect
knobs, a supervisor that keeps one connection up and reports its state on
``/ready``); ``events`` turns a NATS message into a ``RawEvent``; ``core`` and
``jetstream`` are the two triggers.
"""
