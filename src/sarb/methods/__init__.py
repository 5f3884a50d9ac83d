"""Training methods composed of parts: a head (``sarb.models.heads``), a loss
(``sarb.losses``) and augmentations (:mod:`sarb.methods.augmentations`).

The named methods (``sarb methods``) are presets of these parts (``sarb.presets``).
"""

from sarb.methods.method import Method, build_method, check_parts

__all__ = ["Method", "build_method", "check_parts"]
