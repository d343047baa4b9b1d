"""Records its termination callback in a file named by an env var."""

import os
import time


def init_context(context):
    def on_termination():
        with open(os.environ["TERMINATION_FILE"], "a") as handle:
            handle.write(f"terminated {context.worker_id}\n")

    context.platform.set_termination_callback(on_termination)


def handler(context, event):
    time.sleep(float(event.fields.get("s", "0")))
    return event.fields.get("n", "done")
