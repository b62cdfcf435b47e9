"""Values of constructor arguments <-> JSON, as a table of small handlers.

Each supported Python type has a :class:`Handler`: a ``check`` run when an
object is constructed (cheap: it never calls ``get_config`` of nested
objects), an ``encode`` run by ``get_config`` and a ``decode`` run by
``from_config``. Handlers are looked up by the value's type (following its
MRO, cached), so supporting a new type means registering one handler, not
editing a chain of conditions.

JSON forms (``config.json`` stays readable):

* ``None``, ``bool``, ``int``, ``float``, ``str``, ``list``: themselves.
* ``dict`` with ``str`` keys: itself, unless a key could be mistaken for a
  tagged value (``"__keras_safe__"``, ``"class_name"``), then tagged.
* Keras objects (layers, models, initializers, losses, dtype policies ...)
  and instances of registered classes: Keras' own ``{"module", "class_name",
  "config", "registered_name"}`` form.
* Functions: the same form with ``"class_name": "function"``.
* Everything else: ``{"__keras_safe__": "<tag>", ...}``, e.g.
  ``{"__keras_safe__": "tuple", "items": [3, 3]}``.

The handlers live in ``_codec_core`` (containers), ``_codec_numpy`` and
``_codec_objects``.
"""

from __future__ import annotations

from keras_safe._config.codec_core import (
    DEFAULT_NUMPY_LIMIT,
    JSON,
    TAG,
    Codec,
    Handler,
    PathT,
    format_path,
    register_container_handlers,
    registered_key,
)
from keras_safe._config.codec_numpy import register_numpy_handlers
from keras_safe._config.codec_objects import register_object_handlers

__all__ = [
    "DEFAULT_NUMPY_LIMIT",
    "JSON",
    "TAG",
    "Codec",
    "Handler",
    "PathT",
    "codec",
    "format_path",
    "registered_key",
]


def _build_default_codec() -> Codec:
    c = Codec()
    register_container_handlers(c)
    register_numpy_handlers(c)
    register_object_handlers(c)
    return c


codec = _build_default_codec()
"""The codec every :class:`~keras_safe.Serializable` class uses."""
