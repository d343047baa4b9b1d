"""A module that exists but has no ``handler`` function (for test_bad_config)."""


def not_the_handler(context, event):
    return "wrong function"
