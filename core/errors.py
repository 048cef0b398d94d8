"""Errors the pipeline raises for things a user can fix.

Every message is meant to be shown as it is: in the app, or as the command line's
one-line error. Anything else that escapes is a bug, and keeps its traceback.
"""


class PipelineError(Exception):
    """Base class: a problem with the input, not with the code."""


class ImageDecodeError(PipelineError):
    """A file is not an image this pipeline can read."""


class DatasetError(PipelineError):
    """The dataset folder is missing, empty or laid out wrongly."""


class ConfigError(PipelineError):
    """A training or evaluation option is invalid."""


class RunNotFoundError(PipelineError):
    """No run with that id in the registry (or the id itself is invalid)."""


class TrainingBusyError(PipelineError):
    """Another training already runs on this machine."""
