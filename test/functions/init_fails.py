def init_context(context):
    raise RuntimeError("cannot load the model")


def handler(context, event):
    return "never"
