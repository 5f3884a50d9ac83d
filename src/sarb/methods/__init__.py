"""The method registry: every training method is added in one place, ``register``.

A method is a :class:`~sarb.methods.base.Method`, a head on the backbone's feature map plus its
training objective; all methods share the engine (``sarb.engine``).
"""

from sarb.methods import (  # noqa: F401  (importing registers the methods)
    curriculum,
    gcn,
    linear,
    mixup,
    sarb,
)
from sarb.methods.base import Method, MethodContext, MethodInfo, create_method, list_methods

__all__ = ["Method", "MethodContext", "MethodInfo", "create_method", "list_methods"]
