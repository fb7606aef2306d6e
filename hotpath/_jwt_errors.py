"""The one exception both JWT twins raise for a token that must be refused."""


class InvalidTokenError(ValueError):
    """The token is not acceptable; ``reason`` says why, for logs only.

    ``reason`` is a short machine word such as ``"bad_signature"`` or
    ``"expired"``. Clients get a bare 401 and never see it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
