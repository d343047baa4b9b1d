import time


def init_context(context):
    time.sleep(60)  # a model that takes forever to load


def handler(context, event):
    return "never"
