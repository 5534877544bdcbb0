"""The one exception type for expected failures in the tiler package."""


class TilerError(Exception):
    """A failure a user can act on: bad input, a missing file, an unreachable bucket.

    The CLI prints the message without a traceback; the server answers ``status`` with it.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
