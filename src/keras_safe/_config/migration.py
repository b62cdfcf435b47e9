"""Config versions and renamed classes: how an old saved config meets new code.

A :class:`~keras_safe.Serializable` class carries ``config_version`` (an int,
1 unless the class says otherwise) and may define the classmethod
``upgrade_config(config, from_version)``. Every config it writes records
``"config_version"``; a config without that key was written before the class
had versions (or by plain Keras) and counts as version 1. ``from_config``
calls :func:`migrate` first: an older config goes through ``upgrade_config``
once, a newer one is refused.

A class renamed (or moved to another package) is registered with
``aliases=("old_package>OldName",)``. The config then resolves through the
registry, and :func:`map_renamed_layers` points Keras at the weight paths the
old class name produced (Keras names the layers it keeps in lists and dicts
after their class). The public face of all this, :func:`keras_safe.upgrade`,
is in ``evolution.py``.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keras_safe import _keras
from keras_safe._config.describe import distribution_of
from keras_safe._config.registry import registry
from keras_safe.errors import CompatibilityError, SerializationError, _see_docs

if TYPE_CHECKING:
    from keras_safe._config.codec_core import Codec
    from keras_safe._format.manifest import Manifest
    from keras_safe._guard.allowlist import Resolved

__all__ = [
    "DEFAULT_VERSION",
    "MIGRATED",
    "VERSION_KEY",
    "check_class",
    "map_renamed_layers",
    "migrate",
    "mismatch_message",
    "version_hand_written",
    "with_aliases",
]

VERSION_KEY = "config_version"
DEFAULT_VERSION = 1
"""The version of a class without ``config_version``, and of a config without the key."""

_SCALARS = (str, int, float, bool, type(None))

MIGRATED: contextvars.ContextVar[type | None] = contextvars.ContextVar(
    "keras_safe_migrated", default=None
)
"""The class whose hand-written ``from_config`` runs on a config migrated by
:func:`version_hand_written`, so the derived one it may call does not migrate again."""


# -- config versions ------------------------------------------------------------------


def check_class(cls: type) -> None:
    """Refuse a bad ``config_version`` or ``upgrade_config`` when the class is defined."""
    version = getattr(cls, VERSION_KEY, DEFAULT_VERSION)
    if type(version) is not int or version < 1:
        raise SerializationError(
            f"{cls.__qualname__}.config_version must be a positive int (1, 2, ...), got "
            f"{version!r}. Bump it by one each time the meaning of the saved config changes."
        )
    upgrade = cls.__dict__.get("upgrade_config")
    if upgrade is not None and not isinstance(upgrade, classmethod):
        raise SerializationError(
            f"{cls.__qualname__}.upgrade_config must be a classmethod: write\n"
            "    @classmethod\n"
            "    def upgrade_config(cls, config, from_version): ..."
        )


def saved_version(owner: str, config: Mapping[str, Any]) -> int:
    """The version a config was written at (1 when it does not say)."""
    version = config.get(VERSION_KEY, DEFAULT_VERSION)
    if type(version) is not int or version < 1:
        raise CompatibilityError(
            f"The saved config of {owner} has config_version {version!r}, which keras_safe "
            "never writes (it is a positive int); the file was edited or not written for "
            f"{owner}."
        )
    return version


def migrate(cls: Any, config: Mapping[str, Any], codec: Codec) -> tuple[dict[str, Any], int]:
    """``config`` without its version key, upgraded to ``cls.config_version``.

    Returns the config and the version it was saved at. ``upgrade_config``
    runs once, on a deep copy, with the saved version, and only when that is
    older than the class; values it sets may be Python objects (a tuple, an
    enum member, a layer) or their saved JSON form.

    Raises:
        CompatibilityError: the config is newer than the class, or
            ``upgrade_config`` failed or returned something else than a dict.
    """
    owner = cls.__qualname__
    saved = saved_version(owner, config)
    current: int = cls.config_version
    values = {key: value for key, value in config.items() if key != VERSION_KEY}
    if saved > current:
        raise CompatibilityError(_newer_message(cls, saved, current))
    if saved == current:
        return values, saved
    try:
        upgraded = cls.upgrade_config(copy.deepcopy(values), saved)
    except Exception as exc:  # user code: say which migration failed, keep the cause
        raise CompatibilityError(
            f"{owner}.upgrade_config(config, from_version={saved}) failed on a config saved "
            f"at config v{saved} (this code is at v{current}): {type(exc).__name__}: {exc}\n"
            f"Fix {owner}.upgrade_config so it translates every config written at v{saved}; "
            f"the config it received had the arguments: {', '.join(sorted(values)) or 'none'}."
        ) from exc
    if not isinstance(upgraded, dict) or not all(isinstance(k, str) for k in upgraded):
        raise CompatibilityError(
            f"{owner}.upgrade_config(config, from_version={saved}) returned "
            f"{type(upgraded).__name__}, not the config dict. End it with `return config`."
        )
    upgraded.pop(VERSION_KEY, None)
    return {key: _saved_form(codec, value, (key,)) for key, value in upgraded.items()}, saved


def _saved_form(codec: Codec, value: Any, path: tuple[Any, ...]) -> Any:
    # upgrade_config may set Python values (a tuple, an enum member) where the
    # config holds their saved form; encode those so from_config decodes both.
    if type(value) in _SCALARS:
        return value
    if type(value) is list:
        return [_saved_form(codec, item, (*path, i)) for i, item in enumerate(value)]
    if type(value) is dict and all(type(key) is str for key in value):
        return {key: _saved_form(codec, item, (*path, key)) for key, item in value.items()}
    return codec.encode(value, path)


def _upgrade_target(cls: type) -> str:
    """What to upgrade to get newer code for ``cls``: its distribution or package."""
    module = cls.__module__ or ""
    distribution, version = distribution_of(module)
    if distribution:
        installed = f", installed: {version}" if version else ""
        return f"{distribution} (pip install --upgrade {distribution}{installed})"
    top = module.split(".", 1)[0]
    if top in ("", "__main__", "builtins"):
        return f"the code that defines {cls.__qualname__}"
    return top


def _newer_message(cls: type, saved: int, current: int) -> str:
    owner = cls.__qualname__
    key = registry.key_of(cls)
    named = f"{owner} ({key})" if key else owner
    return (
        f"Cannot rebuild {named}: saved with {owner} config v{saved}, this code understands "
        f"up to v{current}: upgrade {_upgrade_target(cls)}. The file was written by a newer "
        f"version of {owner} than the one in {cls.__module__}; older code cannot know what "
        "the newer config means."
    )


def mismatch_message(
    cls: type, accepted: Iterable[str], unknown: list[str], missing: list[str], saved: int
) -> str:
    """Why a saved config does not fit ``cls.__init__``, and the two fixes, as code."""
    owner = cls.__qualname__
    current: int = getattr(cls, VERSION_KEY, DEFAULT_VERSION)
    key = registry.key_of(cls) or f"your_package>{cls.__name__}"
    signature = ", ".join(accepted) or "nothing"
    lines = [
        f"The saved config of {owner} (saved at config v{saved}, this code is at "
        f"v{current}) does not fit {owner}.__init__({signature}):"
    ]
    lines += [
        f"  - saved argument `{name}` is not accepted by {owner}.__init__ any more"
        for name in unknown
    ]
    lines += [
        f"  - required argument `{name}` of {owner}.__init__ is not in the saved config"
        for name in missing
    ]
    steps = _migration_steps(unknown, missing)
    if saved < current:
        lines.append(
            f"{owner}.upgrade_config(config, from_version={saved}) ran but left these "
            "arguments as they were. Fix: translate them there, e.g.\n"
            f"        if from_version < {saved + 1}:\n{steps}"
        )
    else:
        bump = current + 1
        lines.append(
            f"Fix, either:\n  1. bump {owner}.config_version to {bump} and translate configs "
            f"saved at v{saved} or older:\n"
            f"    config_version = {bump}\n\n"
            "    @classmethod\n"
            "    def upgrade_config(cls, config, from_version):\n"
            f"        if from_version < {bump}:\n{steps}"
            "        return config\n"
            f"  2. or, if the file was written by another class than the {owner} now "
            f"registered as {key!r} (the old class was renamed and its key reused): register "
            f"the old class with aliases=({key!r},) and give {owner} a key of its own."
        )
    lines.append(_see_docs("CompatibilityError"))
    return "\n".join(lines)


def _migration_steps(unknown: list[str], missing: list[str]) -> str:
    indent = " " * 12
    if len(unknown) == 1 and len(missing) == 1:
        return f'{indent}config["{missing[0]}"] = config.pop("{unknown[0]}")\n'
    steps = [f'{indent}config["{name}"] = ...  # a value for the new argument' for name in missing]
    steps += [f'{indent}config.pop("{name}")  # or move it to a new argument' for name in unknown]
    return "\n".join(steps) + "\n"


def version_hand_written(cls: type) -> None:
    """Give a hand-written ``get_config``/``from_config`` config versions too.

    ``get_config`` gains the ``"config_version"`` key (without it a bumped
    class would read its own new configs as version 1); ``from_config`` gets
    the config migrated, without that key, as the derived one does.
    """
    own = cls.__dict__
    get_config = own.get("get_config")
    if callable(get_config) and not hasattr(get_config, "_keras_safe_versioned"):

        @functools.wraps(get_config)
        def versioned_get_config(self: Any) -> Any:
            config = get_config(self)
            if isinstance(config, dict):
                config = {**config, VERSION_KEY: type(self).config_version}
            return config

        versioned_get_config._keras_safe_versioned = True  # type: ignore[attr-defined]
        setattr(cls, "get_config", versioned_get_config)  # noqa: B010 (mypy: method assign)
    from_config = own.get("from_config")
    if isinstance(from_config, classmethod) and not hasattr(
        from_config.__func__, "_keras_safe_versioned"
    ):
        original = from_config.__func__

        @functools.wraps(original)
        def migrating_from_config(klass: Any, config: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(config, dict):
                config, _ = migrate(klass, config, klass._keras_safe_plan.codec)
            token = MIGRATED.set(klass)
            try:
                return original(klass, config, *args, **kwargs)
            finally:
                MIGRATED.reset(token)

        migrating_from_config._keras_safe_versioned = True  # type: ignore[attr-defined]
        setattr(cls, "from_config", classmethod(migrating_from_config))  # noqa: B010


# -- renamed classes ------------------------------------------------------------------


def with_aliases(manifest: Manifest) -> Manifest:
    """``manifest`` with ``aliases``: each saved key that now resolves through an alias."""
    aliases = {}
    for record in manifest.objects:
        current = registry.canonical_key(record.key)
        if current is not None and current != record.key:
            aliases[record.key] = current
    return replace(manifest, aliases=aliases) if aliases else manifest


def _stated_names(resolved: Iterable[Resolved]) -> dict[type, set[str]]:
    """The class names the config itself uses for each class it resolved to."""
    names: dict[type, set[str]] = {}
    for found in resolved:
        ref, obj = found.reference, found.obj
        if inspect.isclass(obj) and ref.kind == "class" and ref.name.isidentifier():
            names.setdefault(obj, set()).add(ref.name)
    return names


def _alias_names() -> dict[type, list[str]]:
    """Old class names of registered classes, from the name part of their aliases."""
    names: dict[type, list[str]] = {}
    for key, obj in registry.custom_objects().items():
        if inspect.isclass(obj) and registry.key_of(obj) != key:
            names.setdefault(obj, []).append(key.partition(">")[2])
    return names


def _present(name: str, basenames: set[str]) -> bool:
    pattern = re.compile(re.escape(name) + r"(_\d+)?")
    return any(pattern.fullmatch(base) for base in basenames)


def map_renamed_layers(
    model: Any, store: _keras.RecordingH5Store, resolved: Iterable[Resolved] = ()
) -> dict[type, str]:
    """Make ``store`` find the weights of layers whose class was renamed.

    Keras stores the layers a model keeps in a list or dict (every layer of
    a Functional model, a ``self.blocks = [...]`` attribute) under their
    class name in snake case, numbered per name. A class renamed since the
    file was written would look for its weights under the new name; for
    each class with an old name (an alias, or the class name the config
    used) that the file uses and its current name does not, the store is
    given the path translations. Returns ``{class: old name}`` that was used.
    """
    old: dict[type, str] = {}
    stated = _stated_names(resolved)
    for cls, used in stated.items():  # the config says which name the file used
        others = used - {cls.__name__}
        if cls.__name__ not in used and len(others) == 1:
            old[cls] = others.pop()
    # Classes the config does not name (made inside a subclassed model's
    # __init__): the file's own paths tell whether it predates the rename.
    aliased = {cls: names for cls, names in _alias_names().items() if cls not in stated}
    basenames = store.group_basenames() if aliased else set()
    for cls, names in aliased.items():
        if _present(_keras.snake_case(cls.__name__), basenames):
            continue
        found = next((n for n in names if _present(_keras.snake_case(n), basenames)), None)
        if found is not None:
            old[cls] = found
    if old:
        store.renames = _keras.weight_path_renames(model, old)
    return old
