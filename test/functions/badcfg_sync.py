"""A plain (sync) handler, for configs that ask for the async worker kind."""


def handler(context, event):
    return "sync"
