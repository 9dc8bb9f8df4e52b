"""Exception and warning classes of geoseg.

Every error geoseg raises on purpose derives from :class:`GeosegError`. Subclasses also
inherit the matching built-in exception, so callers that catch ``ValueError`` or ``OSError``
keep working (the rasterio convention).
"""

from __future__ import annotations

__all__ = [
    "GeosegError",
    "ConfigError",
    "StepNotFoundError",
    "RasterReadError",
    "VectorReadError",
    "OutputWriteError",
    "ModelFileError",
    "InputMismatchError",
    "ManifestError",
    "NotGeoreferencedWarning",
    "GeosegWarning",
]


class GeosegError(Exception):
    """Base class of all geoseg errors."""


class ConfigError(GeosegError, ValueError):
    """A pipeline file, a step parameter or a ``--set`` override is invalid."""


class StepNotFoundError(ConfigError, LookupError):
    """A pipeline names a step type that no installed package registers."""


class RasterReadError(GeosegError, OSError):
    """A raster cannot be opened or read (missing, corrupt, not a raster)."""


class VectorReadError(GeosegError, OSError):
    """A vector file cannot be opened or read."""


class OutputWriteError(GeosegError, OSError):
    """An output cannot be written (unwritable folder, full disk, collision)."""


class ModelFileError(GeosegError, ValueError):
    """A model file is corrupt, of the wrong format, or unsafe to load."""


class InputMismatchError(GeosegError, ValueError):
    """An input does not fit what a step or model expects (bands, GSD, kind of data)."""


class ManifestError(GeosegError, OSError):
    """An output folder has no readable ``geoseg-manifest.json`` (written by ``geoseg run``)."""


class GeosegWarning(UserWarning):
    """Base class of geoseg warnings."""


class NotGeoreferencedWarning(GeosegWarning):
    """The input has no CRS/transform: coordinates are pixel coordinates (x=col, y=row)."""
