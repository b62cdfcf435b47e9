"""The manifest: what a keras_safe archive records about itself.

It is stored under the ``"keras_safe"`` key of the archive's
``metadata.json``, a member Keras writes and never reads back, so plain
``keras.models.load_model`` is unaffected. docs/format.md describes the JSON
layout, and docs/manifest.schema.json is its JSON Schema: change them with it.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import inspect
import json
import os
import platform
import re
import sys
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import keras

from keras_safe.errors import IntegrityError

__all__ = [
    "ENVIRONMENT_LABELS",
    "FORMAT_VERSION",
    "Manifest",
    "MemberRecord",
    "ModelSummary",
    "ObjectRecord",
    "content_digest",
    "describe_object",
    "environment",
]

FORMAT_VERSION = 1
"""Version of the manifest layout this keras_safe writes and reads."""

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _text(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise IntegrityError(f"The manifest's {where} should be a string, got {type(value).__name__}.")


def _int(value: Any, where: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise IntegrityError(f"The manifest's {where} should be an integer, got {value!r}.")


def _dict(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise IntegrityError(f"The manifest's {where} should be an object, got {type(value).__name__}.")


@dataclass(frozen=True)
class ObjectRecord:
    """A custom object the model uses, as it was when the file was saved."""

    key: str
    kind: str
    module: str | None
    qualname: str | None
    distribution: str | None = None
    version: str | None = None
    signature: str | None = None
    source_sha256: str | None = None
    config_version: int = 1

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Any) -> ObjectRecord:
        data = _dict(data, "objects[]")
        key = _text(data.get("key"), "object key")
        if not key:
            raise IntegrityError("A manifest object record has no key.")
        return cls(
            key=key,
            kind=_text(data.get("kind"), f"{key}.kind") or "unknown",
            module=_text(data.get("module"), f"{key}.module"),
            qualname=_text(data.get("qualname"), f"{key}.qualname"),
            distribution=_text(data.get("distribution"), f"{key}.distribution"),
            version=_text(data.get("version"), f"{key}.version"),
            signature=_text(data.get("signature"), f"{key}.signature"),
            source_sha256=_text(data.get("source_sha256"), f"{key}.source_sha256"),
            config_version=_int(data.get("config_version", 1), f"{key}.config_version") or 1,
        )

    @property
    def origin(self) -> str:
        """``"module my_project.layers, distribution my-project 1.2.0"``."""
        parts = [f"module {self.module or '?'}"]
        if self.distribution:
            parts.append(f"distribution {self.distribution} {self.version or ''}".rstrip())
        return ", ".join(parts)


@dataclass(frozen=True)
class MemberRecord:
    """An archive member: its SHA-256 (hex) and size in bytes."""

    sha256: str | None
    size: int


@dataclass(frozen=True)
class ModelSummary:
    """Enough about the model to describe it without building it."""

    class_name: str | None = None
    name: str | None = None
    layers: int | None = None
    trainable_params: int | None = None
    non_trainable_params: int | None = None
    optimizer_params: int | None = None
    # What the file holds of the training state (None: an older file, or
    # one saved by plain Keras). optimizer_state is "included" (every
    # optimizer variable is in the file and loads back), "excluded" (the
    # file has none of them: training_note says why) or "none" (the model
    # was not compiled with an optimizer).
    optimizer: str | None = None
    optimizer_state: str | None = None
    training_note: str | None = None

    def to_json(self) -> dict[str, Any]:
        # The training-state keys came later: left out when unknown, so a
        # file saved without them keeps the canonical bytes it was signed with.
        later = ("optimizer", "optimizer_state", "training_note")
        return {k: v for k, v in self.__dict__.items() if v is not None or k not in later}

    @property
    def params(self) -> int | None:
        """Trainable plus non-trainable parameters."""
        if self.trainable_params is None:
            return None
        return self.trainable_params + (self.non_trainable_params or 0)


@dataclass(frozen=True)
class Manifest:
    """What a saved file needs and holds; returned by ``save`` and ``inspect``.

    Attributes:
        digest: SHA-256 over every member's digest: pins the file's content
            (``load(path, expected_digest=manifest.digest)``).
        objects: Every custom object the model uses.
        members: SHA-256 and size of every archive member but metadata.json.
        environment: Versions of keras_safe, Keras, backend, TensorFlow, Python.
        written_by: ``"keras_safe"``, or ``"keras"`` for a file without a
            manifest (then ``digest`` is None and objects are read off the config).
        aliases: Filled by ``inspect``: each saved object key that now
            resolves through an alias, mapped to the current key (not stored
            in the file).
    """

    format_version: int
    environment: Mapping[str, str | None]
    saved_at: str | None
    model: ModelSummary
    objects: tuple[ObjectRecord, ...]
    members: Mapping[str, MemberRecord]
    digest: str | None
    signature: str | None = None
    written_by: str = "keras_safe"
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def keras_version(self) -> str | None:
        return self.environment.get("keras")

    @property
    def tensorflow_version(self) -> str | None:
        return self.environment.get("tensorflow")

    @property
    def backend(self) -> str | None:
        """The Keras backend the file was saved under (None when not recorded)."""
        return self.environment.get("backend")

    def object(self, key: str) -> ObjectRecord | None:
        """The record for ``key``, or None."""
        return next((record for record in self.objects if record.key == key), None)

    def to_json(self, *, signed: bool = True) -> dict[str, Any]:
        """The manifest as stored in metadata.json (``signed=False`` drops the HMAC)."""
        data: dict[str, Any] = {
            "format": self.format_version,
            "environment": dict(self.environment),
            "saved_at": self.saved_at,
            "model": self.model.to_json(),
            "objects": [record.to_json() for record in self.objects],
            "members": {
                name: {"sha256": m.sha256, "size": m.size} for name, m in self.members.items()
            },
            "digest": self.digest,
        }
        if signed and self.signature is not None:
            data["signature"] = {"algorithm": "hmac-sha256", "value": self.signature}
        return data

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Parse a stored manifest; a malformed one raises IntegrityError."""
        data = _dict(data, "top level")
        version = _int(data.get("format"), "format")
        if version is None or version < 1:
            raise IntegrityError("The manifest has no valid format version.")
        if version > FORMAT_VERSION:
            raise IntegrityError(
                f"The manifest has format {version}; this keras_safe reads up to "
                f"{FORMAT_VERSION}. Upgrade keras_safe to load this file."
            )
        environment = {
            str(k): _text(v, f"environment.{k}")
            for k, v in _dict(data.get("environment", {}), "environment").items()
        }
        model_data = _dict(data.get("model", {}), "model")
        model = ModelSummary(
            class_name=_text(model_data.get("class_name"), "model.class_name"),
            name=_text(model_data.get("name"), "model.name"),
            layers=_int(model_data.get("layers"), "model.layers"),
            trainable_params=_int(model_data.get("trainable_params"), "model.trainable_params"),
            non_trainable_params=_int(
                model_data.get("non_trainable_params"), "model.non_trainable_params"
            ),
            optimizer_params=_int(model_data.get("optimizer_params"), "model.optimizer_params"),
            optimizer=_text(model_data.get("optimizer"), "model.optimizer"),
            optimizer_state=_text(model_data.get("optimizer_state"), "model.optimizer_state"),
            training_note=_text(model_data.get("training_note"), "model.training_note"),
        )
        objects = data.get("objects", [])
        if not isinstance(objects, list):
            raise IntegrityError("The manifest's objects should be a list.")
        members: dict[str, MemberRecord] = {}
        for name, member in _dict(data.get("members", {}), "members").items():
            member = _dict(member, f"members.{name}")
            sha = _text(member.get("sha256"), f"members.{name}.sha256")
            size = _int(member.get("size"), f"members.{name}.size")
            if sha is None or not re.fullmatch(r"[0-9a-f]{64}", sha) or size is None or size < 0:
                raise IntegrityError(f"The manifest's record of member {name!r} is malformed.")
            members[str(name)] = MemberRecord(sha, size)
        signature_data = data.get("signature")
        signature = None
        if signature_data is not None:
            signature_data = _dict(signature_data, "signature")
            if signature_data.get("algorithm") != "hmac-sha256":
                raise IntegrityError(
                    f"The manifest is signed with {signature_data.get('algorithm')!r}; keras_safe "
                    "knows hmac-sha256."
                )
            signature = _text(signature_data.get("value"), "signature.value")
        return cls(
            format_version=version,
            environment=environment,
            saved_at=_text(data.get("saved_at"), "saved_at"),
            model=model,
            objects=tuple(ObjectRecord.from_json(o) for o in objects),
            members=members,
            digest=_text(data.get("digest"), "digest"),
            signature=signature,
        )

    # -- authenticity ---------------------------------------------------------

    def canonical_bytes(self) -> bytes:
        """The bytes the HMAC signs: the manifest without its signature."""
        return json.dumps(
            self.to_json(signed=False), sort_keys=True, separators=(",", ":")
        ).encode()

    def signed(self, key: bytes) -> Manifest:
        """A copy carrying an HMAC-SHA256 of the manifest under ``key``."""
        mac = hmac.new(_key_bytes(key), self.canonical_bytes(), hashlib.sha256).hexdigest()
        return replace(self, signature=mac)

    def signature_matches(self, key: bytes) -> bool:
        """Whether the stored HMAC was made with ``key``."""
        if self.signature is None:
            return False
        expected = hmac.new(_key_bytes(key), self.canonical_bytes(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)


def _key_bytes(key: Any) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)) and len(key) > 0:
        return bytes(key)
    raise TypeError("signing_key must be non-empty bytes (or str).")


def content_digest(members: Mapping[str, MemberRecord]) -> str:
    """One SHA-256 over every member's name and digest: the file's content digest."""
    listing = {name: member.sha256 for name, member in sorted(members.items())}
    return hashlib.sha256(
        json.dumps(listing, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


ENVIRONMENT_LABELS: Mapping[str, str] = {
    "keras_safe": "keras_safe",
    "keras": "Keras",
    "backend": "backend",
    "tensorflow": "TensorFlow",
    "python": "Python",
}
"""How text names each key of :func:`environment`, in the order it lists them."""


def environment() -> dict[str, str | None]:
    """Versions of everything that shapes how a file loads, as of now."""
    from keras_safe import __version__

    return {
        "keras_safe": __version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "tensorflow": tensorflow_version(),
        "python": platform.python_version(),
    }


# The distributions that install the ``tensorflow`` package, most common first.
_TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tf-nightly", "tensorflow-macos")


def tensorflow_version() -> str | None:
    """The installed TensorFlow's version, or None; never imports TensorFlow.

    Importing it costs seconds and hundreds of MB, which a JAX or PyTorch
    user should not pay for a version string: where TensorFlow is not imported
    yet, the version comes from the installed package's metadata.
    """
    module = sys.modules.get("tensorflow")
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    for name in _TENSORFLOW_DISTRIBUTIONS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def describe_object(
    key: str, obj: Any, kind: str, distribution: tuple[str | None, str | None]
) -> ObjectRecord:
    """An :class:`ObjectRecord` for a live object."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        signature: str | None = _ADDRESS.sub("", str(inspect.signature(target)))
    except (TypeError, ValueError):
        signature = None
    return ObjectRecord(
        key=key,
        kind=kind,
        module=getattr(obj, "__module__", None),
        qualname=getattr(obj, "__qualname__", None),
        distribution=distribution[0],
        version=distribution[1],
        signature=signature,
        source_sha256=source_sha256(obj),
        config_version=int(getattr(obj, "config_version", 1)) if inspect.isclass(obj) else 1,
    )


# obj -> ((source file, mtime, size), digest): finding a class's source parses
# its whole module (milliseconds per class, on every save and verify).
_SOURCE_DIGESTS: weakref.WeakKeyDictionary[Any, tuple[tuple[str, int, int], str | None]] = (
    weakref.WeakKeyDictionary()
)


def source_sha256(obj: Any) -> str | None:
    """SHA-256 of ``inspect.getsource(obj)``, or None where there is no source.

    Remembered per object while its source file keeps its modification time
    and size, so the digest still follows edits of the file, as
    ``inspect.getsource`` does.
    """
    try:
        filename = inspect.getsourcefile(obj)
        info = os.stat(filename) if filename else None
    except (OSError, TypeError):
        info = None
    stamp = (filename, info.st_mtime_ns, info.st_size) if info is not None and filename else None
    if stamp is not None:
        try:
            cached = _SOURCE_DIGESTS.get(obj)
        except TypeError:  # not weakly referenceable
            cached, stamp = None, None
        if cached is not None and cached[0] == stamp:
            return cached[1]
    try:
        digest: str | None = hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()
    except (OSError, TypeError):
        digest = None
    if stamp is not None:
        _SOURCE_DIGESTS[obj] = (stamp, digest)
    return digest
