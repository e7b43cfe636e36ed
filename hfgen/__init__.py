from . import models  # noqa: F401  (registers the Auto classes)
from .hub import push_to_hub

__version__ = "0.1.0"
