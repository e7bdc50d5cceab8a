"""The one exception type that CLIs turn into a clear one-line message and exit code."""


class NMError(Exception):
    """A user-facing error: its str() is a complete one-line message.

    ``exit_code`` is what the CLI exits with (2 = bad input/usage, 3 = OBS problem,
    4 = environment such as permissions, 1 = other).
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class BadInput(NMError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


class OBSProblem(NMError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=3)


class EnvProblem(NMError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=4)
