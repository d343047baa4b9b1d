"""Uses every logger call Nuclio functions use."""


def handler(context, event):
    context.logger.debug("debug line %s", "with-arg")
    context.logger.info("info line")
    context.logger.warn_with("warn line", user="alice", count=3)
    context.logger.error_with("error line %d", 7, code="E7")
    return "logged"
