"""The one exception type for expected failures in the proxy package."""


class ProxyError(Exception):
    """A failure a user or operator can act on: a bad URL, no live backend, a bad flag.

    The CLI prints the message without a traceback; the server answers ``status`` with it.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
