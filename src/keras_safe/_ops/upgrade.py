"""Config evolution: files written by older code keep loading, on purpose.

Three tools, each explicit in the code that changed:

* ``config_version`` on a :class:`~keras_safe.Serializable` class (an int,
  default 1) is written into every config it saves. Loading a config saved
  at an older version runs the classmethod ``upgrade_config(config,
  from_version)`` once before the object is built; a config newer than the
  class is refused with :class:`~keras_safe.CompatibilityError`. A config
  without the key counts as version 1. This happens in ``from_config``, so
  plain ``keras.models.load_model`` migrates too.
* ``@keras_safe.register(..., aliases=("old_package>OldName",))`` makes files
  saved under an old key (old package or class name) resolve to the renamed
  class, and :func:`keras_safe.load` finds the weights Keras stored under
  the old class name.
* :func:`upgrade` re-saves an old file (legacy ``.h5``, a ``.keras`` without
  manifest, older config versions, old keys) as a current, verified
  keras_safe archive.

The mechanics live in ``_migration.py``.
"""

from __future__ import annotations

import os
from typing import Any

import keras
from typing_extensions import Unpack

from keras_safe import _keras
from keras_safe._format.manifest import Manifest
from keras_safe._ops.load import load
from keras_safe._ops.options import LoadKwargs, renamed_keywords
from keras_safe._ops.save import _target_for_save, save

__all__ = ["upgrade"]


@renamed_keywords("upgrade", verify_key="signing_key")
def upgrade(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], **load_kwargs: Unpack[LoadKwargs]
) -> Manifest:
    """Re-save an old model file as a current, verified keras_safe archive.

    ``src`` is loaded with :func:`keras_safe.load` (every check, the
    migrations of ``upgrade_config``, aliases of renamed classes, their
    weights included), then written to ``dst`` with :func:`keras_safe.save`,
    which rebuilds the model from the written bytes and compares configs and
    every weight before the file is moved into place. The new file records
    the current keys and config versions, a manifest with digests, and the
    layout plain ``keras.models.load_model`` expects from the current code.
    ``dst`` may be ``src`` (the replacement is atomic) and is overwritten if
    it exists.

    Args:
        src: A ``.keras`` archive (with or without manifest) or a legacy
            ``.h5`` model written by Keras 3.
        dst: Where to write the upgraded archive; must end in ``.keras``.
        **load_kwargs: Passed to :func:`keras_safe.load` (``custom_objects``,
            ``allow_imports``, ``compile``, ``on_mismatch`` ...).

    Returns:
        The :class:`~keras_safe.Manifest` of the new file (``digest`` pins it).

    Raises:
        KerasSafeError: The errors of :func:`keras_safe.load` for ``src``
            (nothing is written then) and of :func:`keras_safe.save` for ``dst``.

    Example:
        >>> manifest = keras_safe.upgrade("old_model.h5", "model.keras",
        ...                               allow_imports=("my_project",))
        >>> keras_safe.load("model.keras", expected_digest=manifest.digest)
    """
    _target_for_save(dst)  # a wrong target fails before the model is loaded
    model = load(src, **load_kwargs)
    _build_optimizer(model)
    return save(model, dst)


def _build_optimizer(model: Any) -> None:
    """Give ``model`` an optimizer built for its trainable variables.

    Loading a compiled model builds its optimizer for the model's variables
    before reading the saved state, so a file must hold a built optimizer.
    Keras' legacy .h5 loader builds it for ``model._trainable_variables`` (the
    model's own, none for a Functional model) and restores nothing
    (``legacy_h5_format.load_model_from_hdf5``), and a model compiled but
    never trained has an unbuilt one. Either way the state is that of an
    optimizer that has not stepped yet: a fresh one built as the first
    training step would build it, keeping the step count.
    """
    optimizer = getattr(model, "optimizer", None)
    variables = list(model.trainable_variables)
    if optimizer is None or _keras.optimizer_built_for(optimizer, variables):
        return
    fresh = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    fresh.build(variables)
    fresh.iterations.assign(optimizer.iterations)
    model.optimizer = fresh
