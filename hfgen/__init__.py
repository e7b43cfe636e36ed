from . import models  # noqa: F401  (registers the Auto classes)

__version__ = "0.1.0"
