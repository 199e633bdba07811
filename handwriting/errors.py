"""The error of a request the library cannot carry out because of what the user gave.

Every message says what is wrong and where: the file, the line, the option or the field.
Entry points print it as one line, `error: ...`, never a traceback.
"""


class SampleError(ValueError):
    """A request that cannot be sampled; the message says what is wrong and where."""


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says why and what to do."""


class ServeError(ValueError):
    """The page cannot be served; the message says what is missing and how to get it."""
