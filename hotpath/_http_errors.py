"""The one exception both HTTP twins raise for a request the server answers itself."""


class HttpError(Exception):
    """A request the server answers itself: status and envelope code."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
