"""The one exception sandbox operations raise."""


class SandboxError(RuntimeError):
    """A sandbox operation failed; the message says what to do about it."""
