"""Typed errors raised by the library.

The library never decides exit codes; ``deepfake_cli.cli`` maps these classes to them.
"""

from __future__ import annotations


class DfdetectError(Exception):
    """Base class for every error dfdetect raises on purpose."""


class ConfigError(DfdetectError):
    """A configuration key is unknown, has the wrong type or an invalid value."""


class UsageError(DfdetectError):
    """Options that cannot be combined, or a value the command cannot use."""


class UnknownModelError(DfdetectError):
    """A model name that is neither registered nor a checkpoint on disk."""


class ModelNotAvailableError(DfdetectError):
    """No trained model was given and none is shipped or configured."""


class CheckpointError(DfdetectError):
    """A checkpoint file is missing, truncated, unsafe or of an unknown format."""


class PretrainedWeightsUnavailable(DfdetectError):
    """ImageNet weights were requested but are neither cached nor downloadable."""


class NoInputsError(DfdetectError):
    """The given sources expand to no file at all."""


class InputFileError(DfdetectError):
    """One input file could not be read; the batch it belongs to goes on."""


class ScanCancelled(DfdetectError):
    """A video scan was stopped by its caller (a client that went away, a server shutting down)."""


class ServerError(DfdetectError):
    """The API server cannot start (its address is taken, or not this machine's)."""


class OutputError(DfdetectError):
    """An output file or folder cannot be written where the options say (a folder given as a file, ...)."""


class DatasetError(DfdetectError):
    """A dataset folder or metadata file is missing or malformed."""


class OptionalDependencyError(DfdetectError):
    """A feature needs a package from an extra that is not installed (e.g. dfdetect[export])."""


class ExportError(DfdetectError):
    """A model could not be exported, or the exported model does not match PyTorch."""
