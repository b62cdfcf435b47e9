"""How much a file may hold: the bounds every guard checks before reading.

A ``.keras`` archive stores its members uncompressed, so a stored member can
be no larger than the file itself; only compressed members (which Keras
never writes) can expand, and their expansion is bounded relative to the
file's size and in absolute terms. JSON members (``config.json``,
``metadata.json``, the configs of a legacy ``.h5``) have absolute caps,
because Python turns every byte of them into objects.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from keras_safe.errors import _UsageError

__all__ = ["ArchiveLimits"]


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what a model file may contain, checked before anything is read.

    The defaults fit any model Keras can save (a 10 GB model has a config of
    a few MB and a handful of members) and refuse files built to exhaust
    memory, disk or time. Pass your own to :func:`keras_safe.load`,
    :func:`~keras_safe.inspect` or :func:`~keras_safe.verify` as ``limits=``.

    Attributes:
        max_members: Archive members (a model has 3, plus its assets).
        max_json_bytes: Size of each JSON member or HDF5 config attribute.
        max_json_depth: Nesting of ``[``/``{`` in a JSON member.
        max_json_items: Values (counted as ``,``, ``[`` and ``{``) in a JSON member.
        max_compression_ratio: How many times a compressed member may expand;
            all compressed members together may expand to at most this many
            times the archive's size.
        max_inflated_bytes: Absolute cap on all compressed members once
            decompressed (they are decompressed in memory).
        max_h5_objects: Groups, datasets and links in a weights file.
        max_h5_attribute_bytes: Size of one HDF5 attribute (legacy ``.h5``
            configs are attributes, and are also bound by ``max_json_bytes``).
        max_layer_calls: Layer and operation calls Keras makes to rebuild the
            model's graphs, nested models counted once per call of them
            (each call costs one to a few milliseconds).
        max_rebuild_steps: Iterations of Keras' functional rebuild loop
            (layers times passes; a file listing layers deepest-first makes
            it quadratic).
        max_build_bytes: Memory the config makes Keras allocate besides
            variables, for the whole load: constants, lookup vocabularies
            (as numpy pads them, config and assets), Normalization's
            broadcast mean and variance, the bins, tokens and output sizes
            of preprocessing layers.
        max_build_seconds: Wall-clock seconds Keras may take to rebuild the
            model from its config, checked before every layer or operation is
            constructed or called and before every variable is created;
            reading the weights afterwards is bounded by the file's size
            instead.

    Example:
        >>> keras_safe.load("model.keras", limits=keras_safe.ArchiveLimits(max_json_bytes=1 << 20))
    """

    max_members: int = 1_000
    max_json_bytes: int = 16 << 20
    max_json_depth: int = 100
    max_json_items: int = 2_000_000
    max_compression_ratio: float = 50.0
    max_inflated_bytes: int = 1 << 30
    max_h5_objects: int = 100_000
    max_h5_attribute_bytes: int = 16 << 20
    max_layer_calls: int = 10_000
    max_rebuild_steps: int = 2_000_000
    max_build_bytes: int = 256 << 20
    max_build_seconds: float = 300.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise _UsageError(
                    f"ArchiveLimits.{item.name} must be a positive number, got {value!r}."
                )

    def inflated_budget(self, file_size: int) -> int:
        """Bytes all compressed members of a ``file_size``-byte archive may expand to.

        Relative to the file (a few MB must not expand to GBs), never below
        1 MiB (small JSON members compress well), never above
        ``max_inflated_bytes``.
        """
        relative = int(self.max_compression_ratio * file_size)
        return min(self.max_inflated_bytes, max(1 << 20, relative))


def resolve_limits(limits: object) -> ArchiveLimits:
    """``limits`` (None for the defaults) as an :class:`ArchiveLimits`."""
    if limits is None:
        return ArchiveLimits()
    if not isinstance(limits, ArchiveLimits):
        raise _UsageError(
            f"limits must be a keras_safe.ArchiveLimits, got {type(limits).__name__}. "
            "Example: limits=keras_safe.ArchiveLimits(max_json_bytes=1 << 20)."
        )
    return limits
