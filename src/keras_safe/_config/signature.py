"""What a class's ``__init__`` accepts, worked out once when the class is defined.

:class:`InitPlan` binds constructor arguments to the signature (and checks
them with the codec) on every construction, and maps a saved config back to
the arguments of a call on ``from_config``. Used by :mod:`keras_safe._config.base`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from keras_safe._config import migration
from keras_safe._config.codec import Codec
from keras_safe._config.describe import defined_in_keras
from keras_safe.errors import CompatibilityError

EMPTY = inspect.Parameter.empty
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Captured:
    """Holds captured arguments; deliberately not a list/dict, so Keras'
    weight saving (which walks list and dict attributes) never looks inside."""

    __slots__ = ("arguments",)

    def __init__(self, arguments: dict[str, Any]) -> None:
        self.arguments = arguments


@dataclass(frozen=True)
class InitPlan:
    """What ``__init__`` accepts, worked out once per class."""

    signature: inspect.Signature
    params: tuple[inspect.Parameter, ...]
    varargs: str | None
    varkw: str | None
    base_params: frozenset[str]
    automatic: bool
    codec: Codec
    new_takes_args: bool

    def capture(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Captured | None:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError:
            return None  # __init__ itself will raise the precise TypeError
        arguments = bound.arguments
        if self.automatic:
            check = self.codec.check
            for name, value in arguments.items():
                if name == self.varargs:
                    for i, item in enumerate(value):
                        check(item, (name, i))
                elif name == self.varkw:
                    for key, item in value.items():
                        check(item, (key,))
                else:
                    check(value, (name,))
        return Captured(arguments)

    def split(
        self, cls: type, values: dict[str, Any], saved_version: int
    ) -> tuple[list[Any], dict[str, Any], dict[str, Any], list[str]]:
        """Config values -> (positional args, keyword args, base-class kwargs, unclaimed).

        ``unclaimed`` names the values handed to ``**kwargs`` that neither a
        parameter nor the Keras base class declares: whether ``__init__``
        still accepts them is only known once it runs.
        """
        owner = cls.__qualname__
        values = dict(values)
        missing: list[str] = []
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        extra = values.pop(self.varargs, []) if self.varargs else []
        if self.varargs and not isinstance(extra, (list, tuple)):
            raise CompatibilityError(
                f"{owner}: the saved value of *{self.varargs} is not a list; the config was "
                "not written for this class."
            )
        for param in self.params:
            name = param.name
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                positional.extend(extra)
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                continue
            elif param.kind in _POSITIONAL and (
                param.kind is inspect.Parameter.POSITIONAL_ONLY or extra
            ):
                if name in values:
                    positional.append(values.pop(name))
                elif param.default is not EMPTY:
                    positional.append(param.default)
                else:
                    missing.append(name)
            elif name in values:
                keywords[name] = values.pop(name)
            elif param.default is EMPTY:
                missing.append(name)
        base: dict[str, Any] = {}
        unknown: list[str] = []
        unclaimed: list[str] = []
        for name, value in values.items():
            if self.varkw:
                keywords[name] = value
                if name not in self.base_params:
                    unclaimed.append(name)
            elif name in self.base_params:
                base[name] = value
            else:
                unknown.append(name)
        if missing:  # a renamed argument: name the saved one **kwargs would swallow too
            unknown += unclaimed
        if unknown or missing:
            raise CompatibilityError(self.mismatch(cls, unknown, missing, saved_version))
        return positional, keywords, base, unclaimed

    def mismatch(self, cls: type, unknown: list[str], missing: list[str], saved: int) -> str:
        """Why a saved config does not fit ``__init__``, with the two fixes."""
        accepted = [_shown(p) for p in self.params]
        return migration.mismatch_message(cls, accepted, unknown, missing, saved)


def _shown(param: inspect.Parameter) -> str:
    """A parameter's name as written in a signature: ``units``, ``*args``, ``**kwargs``."""
    if param.kind is param.VAR_POSITIONAL:
        return f"*{param.name}"
    if param.kind is param.VAR_KEYWORD:
        return f"**{param.name}"
    return param.name


def keras_base_params(cls: type) -> frozenset[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if not defined_in_keras(klass) or "__init__" not in klass.__dict__:
            continue
        try:
            parameters = inspect.signature(klass.__dict__["__init__"]).parameters
        except (TypeError, ValueError):
            continue
        names.update(
            name
            for name, p in parameters.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        )
    names.discard("self")
    return frozenset(names)
