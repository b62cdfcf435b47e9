"""The error hierarchy (API.md §6) and construction-time SerializationErrors (§1)."""

from __future__ import annotations

import ast
import collections
import enum
import functools
import io
import re
import typing
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import ROOT

import keras_safe
from keras_safe import errors

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PACKAGE = "test_errors"

# -- the hierarchy ------------------------------------------------------------------

VALUE_ERRORS = [
    keras_safe.RegistrationError,
    keras_safe.VerificationError,
    keras_safe.IntegrityError,
    keras_safe.UnsafeModelError,
    keras_safe.MissingObjectsError,
    keras_safe.CompatibilityError,
]


@pytest.mark.parametrize("cls", [keras_safe.SerializationError, *VALUE_ERRORS])
def test_every_error_is_a_keras_safe_error(cls: type[Exception]) -> None:
    assert issubclass(cls, keras_safe.KerasSafeError)
    assert issubclass(keras_safe.KerasSafeError, Exception)
    assert getattr(errors, cls.__name__) is cls
    assert cls.__name__ in keras_safe.__all__ and cls.__name__ in errors.__all__
    assert cls.__doc__


def test_serialization_error_is_a_type_error() -> None:
    assert issubclass(keras_safe.SerializationError, TypeError)
    assert not issubclass(keras_safe.SerializationError, ValueError)


@pytest.mark.parametrize("cls", VALUE_ERRORS)
def test_errors_about_bad_input_are_value_errors(cls: type[Exception]) -> None:
    assert issubclass(cls, ValueError)
    assert not issubclass(cls, TypeError)


def test_compatibility_warning_is_a_user_warning() -> None:
    assert issubclass(keras_safe.CompatibilityWarning, UserWarning)
    with pytest.warns(keras_safe.CompatibilityWarning):
        import warnings

        warnings.warn("saved with another Keras", keras_safe.CompatibilityWarning, stacklevel=1)


def test_missing_objects_error_lists_what_is_missing() -> None:
    error = keras_safe.MissingObjectsError("2 objects missing", missing=("a>B", "c>D"))
    assert error.missing == ("a>B", "c>D")
    assert str(error) == "2 objects missing"
    assert keras_safe.MissingObjectsError("none").missing == ()


# -- construction-time errors, one per unsupported value -------------------------


def _helper(x: Any) -> Any:
    return x


class _Plain:
    pass


class _WithConfig:
    def get_config(self) -> dict[str, Any]:
        return {}


class _UnregisteredLayer(keras.layers.Layer):
    pass


class _UnregisteredSerializable(keras_safe.SerializableLayer):
    pass


class _Color(enum.Enum):
    RED = 1


_Pair = collections.namedtuple("_Pair", "left right")


class _Sub(list):  # type: ignore[type-arg]
    pass


# (id, value factory, what the message calls it, the value's type as named, the fix)
def _tf() -> Any:
    """TensorFlow, for its tensors as argument values (refused under every backend)."""
    return pytest.importorskip("tensorflow")


BAD_VALUES: list[tuple[str, Any, str, str, str]] = [
    ("lambda", lambda: lambda x: x, "a lambda", "(type function)", "def my_function"),
    (
        "unregistered-function",
        lambda: _helper,
        "the unregistered function _helper",
        "(type function)",
        '@keras_safe.register(package="your_project")\n    def _helper(',
    ),
    (
        "unregistered-class",
        lambda: _Plain,
        "the unregistered class _Plain",
        "test_errors._Plain",
        "@keras_safe.register",
    ),
    (
        "unregistered-class-instance",
        lambda: _WithConfig(),
        "an instance of the unregistered class _WithConfig",
        "test_errors._WithConfig",
        "@keras_safe.register",
    ),
    (
        "unregistered-layer-instance",
        lambda: _UnregisteredLayer(),
        "an instance of the unregistered class _UnregisteredLayer",
        "test_errors._UnregisteredLayer",
        "keras_safe.SerializableLayer",
    ),
    (
        "unregistered-serializable-instance",
        lambda: _UnregisteredSerializable(),
        "an instance of the unregistered class _UnregisteredSerializable",
        "test_errors._UnregisteredSerializable",
        "@keras_safe.register",
    ),
    (
        "unregistered-enum-member",
        lambda: _Color.RED,
        "a member of the unregistered enum _Color",
        "test_errors._Color",
        "register the enum",
    ),
    ("stream", lambda: io.BytesIO(b"x"), "an open file or stream", "_io.BytesIO", "path as a str"),
    (
        "tf-tensor",
        lambda: _tf().constant([1.0]),
        "a tensor",
        "EagerTensor",
        "self.add_weight",
    ),
    ("keras-variable", lambda: keras.Variable([1.0]), "a tensor", "Variable", "add_weight"),
    ("tf-variable", lambda: _tf().Variable(1.0), "a tensor", "ResourceVariable", "add_weight"),
    (
        "keras-tensor",
        lambda: keras.Input((3,)),
        "a symbolic KerasTensor",
        "KerasTensor",
        "build()/call()",
    ),
    (
        "namedtuple",
        lambda: _Pair(1, 2),
        "a namedtuple or tuple subclass",
        "test_errors._Pair",
        "plain tuple",
    ),
    ("list-subclass", lambda: _Sub([1]), "a list subclass", "test_errors._Sub", "plain list"),
    (
        "dict-subclass",
        lambda: collections.OrderedDict(a=1),
        "a dict subclass",
        "collections.OrderedDict",
        "plain dict",
    ),
    ("object", lambda: object(), "an object of an unsupported type", "(type object)", "Fix"),
    ("set", lambda: {1, 2}, "an object of an unsupported type", "(type set)", "tuples"),
    ("complex", lambda: 1j, "an object of an unsupported type", "(type complex)", "numbers"),
    (
        "partial",
        lambda: functools.partial(_helper),
        "an object of an unsupported type",
        "functools.partial",
        "Fix",
    ),
    (
        "object-array",
        lambda: np.array([1, "a"], dtype=object),
        "numpy data of dtype object",
        "numpy.ndarray",
        "numeric, bool or str dtype",
    ),
    (
        "complex-array",
        lambda: np.array([1j]),
        "numpy data of dtype complex128",
        "numpy.ndarray",
        "numeric, bool or str dtype",
    ),
    (
        "complex-scalar",
        lambda: np.complex64(1),
        "numpy data of dtype complex64",
        "numpy.complex64",
        "numeric",
    ),
    (
        "datetime-array",
        lambda: np.array(["2024-01-01"], dtype="datetime64[D]"),
        "dtype datetime64[D]",
        "numpy.ndarray",
        "numeric",
    ),
    (
        "numpy-over-1MiB",
        lambda: np.zeros((513, 512), dtype=np.float32),
        "a numpy array of 1.0 MiB (limit 1.0 MiB)",
        "numpy.ndarray",
        "Store it as a weight in build()",
    ),
    (
        "numpy-str-too-long",
        lambda: np.array(["x" * 70_000]),
        "numpy str data of dtype <U70000",
        "numpy.ndarray",
        "pass a Python str",
    ),
    ("bytes-over-1MiB", lambda: b"x" * (1 << 20 | 1), "bytes of data", "(type bytes)", "weight"),
    ("bytearray", lambda: bytearray(b"x"), "unsupported type", "(type bytearray)", "Fix"),
]


@pytest.fixture
def Holder(scope: keras_safe.Registry) -> type:
    @keras_safe.register(package=PACKAGE)
    class Holder(keras_safe.SerializableLayer):
        initialised = 0

        def __init__(self, value: Any = None, *rest: Any, **kwargs: Any) -> None:
            type(self).initialised += 1
            self.extra = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("extra")}
            super().__init__(**kwargs)
            self.value = value

    return Holder


@pytest.mark.parametrize(
    ("make", "problem", "type_name", "fix"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_VALUES],
)
def test_unsupported_value_fails_at_construction(
    Holder: type, make: Any, problem: str, type_name: str, fix: str
) -> None:
    value = make()
    with pytest.raises(keras_safe.SerializationError) as info:
        Holder(value=value)
    assert Holder.initialised == 0  # refused before __init__ ran: no half-built object
    error = info.value
    assert type(error) is keras_safe.SerializationError
    assert isinstance(error, TypeError)
    message = str(error)
    assert message.startswith(f"{Holder.__qualname__}: argument `value` is "), message
    assert problem in message
    assert type_name in message
    assert "\nFix: " in message and fix in message


def test_open_file_fails_at_construction(Holder: type, tmp_path: Path) -> None:
    with (
        (tmp_path / "vocab.txt").open("w") as handle,
        pytest.raises(keras_safe.SerializationError) as info,
    ):
        Holder(value=handle)
    assert "an open file or stream (type _io.TextIOWrapper)" in str(info.value)
    assert "pass the file's path as a str" in str(info.value)


def test_nested_bad_value_names_its_path(Holder: type) -> None:
    blocks = [
        {"kernel_initializer": "zeros"},
        {"kernel_initializer": keras.initializers.Ones()},
        {"kernel_initializer": _helper},
    ]
    with pytest.raises(keras_safe.SerializationError) as info:
        Holder(blocks)
    message = str(info.value)
    assert "Holder: argument `value[2].kernel_initializer` is the unregistered function" in message

    @keras_safe.register(package=PACKAGE)
    class Model(keras_safe.SerializableLayer):
        def __init__(self, blocks: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    with pytest.raises(keras_safe.SerializationError, match=r"`blocks\[2\]\.kernel_initializer`"):
        Model(blocks=blocks)
    with pytest.raises(keras_safe.SerializationError, match=r"`blocks\[0\]\[1\]\.act`"):
        Model(blocks=([0, {"act": lambda x: x}],))
    with pytest.raises(keras_safe.SerializationError, match=r"`blocks\.<key <object"):
        Model(blocks={object(): 1})


def test_bad_value_in_varargs_and_kwargs_names_its_path(Holder: type) -> None:
    with pytest.raises(keras_safe.SerializationError, match=r"argument `rest\[1\]` is a lambda"):
        Holder(1, 2, lambda: 0)
    with pytest.raises(keras_safe.SerializationError, match=r"argument `extra_fn\.x` is a lambda"):
        Holder(extra_fn={"x": lambda: 0})
    assert Holder.initialised == 0


def test_valid_arguments_construct(Holder: type) -> None:
    layer = Holder((1, 2), 3, extra_note="fine", name="ok")
    assert layer.value == (1, 2) and layer.extra == {"extra_note": "fine"}
    assert Holder.initialised == 1


# -- links to the documentation ------------------------------------------------------

SRC = ROOT / "src" / "keras_safe"
ERRORS_PAGE = ROOT / "docs" / "errors.md"
LINK = re.compile(r"https://\S+?/errors/#[A-Za-z0-9_-]+")


def _slug(heading: str) -> str:
    """The id mkdocs' toc extension gives a heading without an explicit one."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[-\s]+", "-", text).strip("-")


def _page_anchors(markdown: str) -> set[str]:
    """Every anchor of a page: explicit ``{ #id }`` attributes, else the heading's slug."""
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        heading = line.lstrip("#").strip()
        explicit = re.search(r"\{\s*#([\w-]+)\s*\}\s*$", heading)
        anchors.add(explicit.group(1) if explicit else _slug(heading))
    return anchors


def _site_url() -> str:
    match = re.search(r"^site_url:\s*(\S+)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert match, "mkdocs.yml has no site_url"
    return match.group(1)


def test_docs_url_is_the_published_documentation() -> None:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        urls = tomllib.load(handle)["project"]["urls"]
    assert errors._DOCS_URL == urls["Documentation"] == _site_url()
    assert errors._DOCS_URL.endswith("/")
    assert errors._see_docs("IntegrityError") == (f"See {errors._DOCS_URL}errors/#IntegrityError")


def test_page_anchors_follow_mkdocs() -> None:
    anchors = _page_anchors(ERRORS_PAGE.read_text())
    assert {"KerasSafeError", "IntegrityError", "other-errors", "when-saving"} <= anchors
    assert _slug("`save(verify=True)` and more") == "saveverifytrue-and-more"


def test_every_link_a_message_can_hold_points_at_an_anchor() -> None:
    anchors = _page_anchors(ERRORS_PAGE.read_text())
    # The helper takes only these (mypy checks every call), each a section of the page.
    offered = set(typing.get_args(errors._Anchor))
    assert offered <= anchors, offered - anchors
    # Every call in the package names one, as a literal ...
    called = set()
    for path in SRC.rglob("*.py"):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_see_docs":
                (argument,) = node.args
                assert isinstance(argument, ast.Constant), f"{path}:{node.lineno}"
                called.add(argument.value)
        # ... and no message writes a link to the docs by hand.
        if path.name != "errors.py":
            assert "/errors/#" not in source and errors._DOCS_URL not in source, path
    assert called <= offered and called, called
    # The classes documented at length link to their section.
    for name in ("SerializationError", "VerificationError", "IntegrityError"):
        assert name in called
    assert {"UnsafeModelError", "MissingObjectsError", "CompatibilityError"} <= called


def _links(message: str) -> list[str]:
    found = LINK.findall(message)
    for url in found:
        base, _, anchor = url.partition("errors/#")
        assert base == errors._DOCS_URL and anchor in _page_anchors(ERRORS_PAGE.read_text())
    return found


def test_messages_end_with_their_link(Holder: type, tmp_path: Path) -> None:
    docs = errors._DOCS_URL
    with pytest.raises(keras_safe.SerializationError) as info:
        Holder(value=lambda x: x)
    assert _links(str(info.value)) == [f"{docs}errors/#SerializationError"]
    assert str(info.value).splitlines()[-1] == f"See {docs}errors/#SerializationError"

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    path = tmp_path / "m.keras"
    keras_safe.save(model, path)
    with pytest.raises(keras_safe.IntegrityError) as info:
        keras_safe.load(path, expected_digest="0" * 64)
    assert _links(str(info.value)) == [f"{docs}errors/#IntegrityError"]
    with pytest.raises(keras_safe.IntegrityError) as info:
        keras_safe.load(path, signing_key=b"key")
    assert str(info.value).endswith(f"\nSee {docs}errors/#IntegrityError")

    lambdas = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    lambdas.save(tmp_path / "lambda.keras")
    with pytest.raises(keras_safe.UnsafeModelError) as info:
        keras_safe.load(tmp_path / "lambda.keras")
    assert _links(str(info.value)) == [f"{docs}errors/#UnsafeModelError"]

    with keras_safe.registry.scope():

        @keras_safe.register(package="gone")
        class Gone(keras_safe.SerializableLayer):
            def call(self, x: Any) -> Any:
                return x

        keras_safe.save(keras.Model(inputs, Gone()(inputs)), tmp_path / "gone.keras")
    with pytest.raises(keras_safe.MissingObjectsError) as info:
        keras_safe.load(tmp_path / "gone.keras")
    assert _links(str(info.value)) == [f"{docs}errors/#MissingObjectsError"]

    with pytest.raises(keras_safe.RegistrationError) as info:

        @keras_safe.register(package=PACKAGE, name="Holder")
        class Other(keras_safe.SerializableLayer):
            pass

    assert _links(str(info.value)) == [f"{docs}errors/#RegistrationError"]
