"""``diff``: what differs between two saved models, the question asked after retraining.

Both archives are checked against their manifests first (so a file whose
manifest was copied from another cannot pass as identical), then compared
part by part: environment versions, custom objects, the config layer by
layer, and the weights dataset by dataset. Members whose digests match are
not compared any further, files with the same content digest not at all,
and weights are read from both archives a slice at a time, never as two
whole models in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_safe._format.integrity import (
    Progress,
    check_digests,
    check_member_list,
    parse_json,
    read_manifest,
    recorded_members,
)
from keras_safe._format.manifest import ENVIRONMENT_LABELS, Manifest, ObjectRecord
from keras_safe._format.reader import CONFIG, WEIGHTS, ArchiveReader
from keras_safe._guard.gate import check_configs
from keras_safe._ops.compare import Sides, config_differences
from keras_safe._ops.diff_weights import WeightChange, weight_changes
from keras_safe._ops.foreign import derive_manifest
from keras_safe._ops.options import existing_path, sniff
from keras_safe.errors import _UsageError

__all__ = ["DiffReport", "WeightChange", "diff"]

A_B = Sides(
    left="a",
    right="b",
    only_left="only in a ({value})",
    only_right="only in b ({value})",
    layer_only_left="only in a",
    layer_only_right="only in b",
    counts="a has {left} items, b has {right}",
)

_OBJECT_FIELDS = (
    ("module", "module"),
    ("qualname", "qualified name"),
    ("kind", "kind"),
    ("distribution", "distribution"),
    ("version", "distribution version"),
    ("signature", "signature"),
    ("config_version", "config version"),
)


@dataclass(frozen=True)
class DiffReport:
    """What differs between two saved models; ``str(report)`` is the readable text.

    Attributes:
        identical: Both files have the same content digest: nothing was compared.
        versions: Environment differences (keras_safe, Keras, TensorFlow, Python ...).
        model: Differences in the model summaries (class, layers, parameters).
        objects: Custom objects added, removed or changed (module, version, source ...).
        config: Config differences, per layer and argument.
        weights: Every weight that differs, as :class:`WeightChange`.
        members: Other archive members (assets) that differ.
        same: No difference in the model itself (versions aside).
    """

    a: Path
    b: Path
    identical: bool
    versions: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    weights: tuple[WeightChange, ...] = ()
    members: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def same(self) -> bool:
        return self.identical or not (
            self.model or self.objects or self.config or self.weights or self.members
        )

    def sections(self) -> list[tuple[str, list[str]]]:
        """``(title, lines)`` for every part that differs."""
        parts = [
            ("versions", list(self.versions)),
            ("model", list(self.model)),
            ("custom objects", list(self.objects)),
            ("config", list(self.config)),
            ("weights", [str(c) for c in self.weights if not _is_optimizer(c.path)]),
            ("optimizer", _optimizer_summary(self.weights)),
            ("other members", list(self.members)),
        ]
        return [(title, lines) for title, lines in parts if lines]

    def __str__(self) -> str:
        head = f"a: {self.a}\nb: {self.b}\n"
        if self.identical:
            return head + "identical: same content digest\n"
        body = []
        for title, lines in self.sections():
            body.append(f"{title} ({len(lines)}):")
            body.extend(f"  {line}" for line in lines)
        if self.same:
            body.append("the models are the same" + (" (versions aside)" if self.versions else ""))
        body.extend(self.notes)
        return head + "\n".join(body) + "\n"


def _is_optimizer(path: str) -> bool:
    return path.startswith("optimizer/")


def _optimizer_summary(changes: tuple[WeightChange, ...]) -> list[str]:
    count = sum(1 for change in changes if _is_optimizer(change.path))
    return [f"{count} optimizer variable(s) differ (listed in DiffReport.weights)"] if count else []


def diff(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> DiffReport:
    """Compare two saved models: versions, custom objects, config per layer, weights.

    Nothing is built, imported or executed: both files are read as data.
    Each is first checked against its manifest (an ``IntegrityError`` for a
    damaged file); files with the same content digest are reported identical
    without reading their weights.

    Args:
        a: The first ``.keras`` file (e.g. before retraining).
        b: The second ``.keras`` file.

    Returns:
        A :class:`DiffReport`; ``report.same`` tells whether the models differ,
        ``print(report)`` shows how.

    Example:
        >>> report = keras_safe.diff("before.keras", "after.keras")
        >>> [change.path for change in report.weights]
        ['layers/dense/vars/0', 'layers/dense/vars/1']
    """
    return compare_files(a, b)


def compare_files(a: Any, b: Any, progress: Progress | None = None) -> DiffReport:
    """:func:`diff`, reporting the bytes it reads to ``progress``."""
    path_a, path_b = _archive_path(a), _archive_path(b)
    with ArchiveReader(path_a) as reader_a, ArchiveReader(path_b) as reader_b:
        side_a, side_b = _Side(reader_a), _Side(reader_b)
        advance = _phase(progress, "checking digests", side_a.hashed_bytes + side_b.hashed_bytes)
        side_a.check(advance)
        side_b.check(advance)
        versions = tuple(_version_lines(side_a.manifest, side_b.manifest))
        if side_a.manifest.digest is not None and side_a.manifest.digest == side_b.manifest.digest:
            return DiffReport(path_a, path_b, True, versions)
        notes = [
            f"note: {label} has no keras_safe manifest (saved by plain Keras); its members "
            "were compared byte for byte"
            for label, side in (("a", side_a), ("b", side_b))
            if side.manifest.written_by != "keras_safe"
        ]
        config: list[str] = []
        if not side_a.same_member(side_b, CONFIG):
            config = config_differences(side_a.config(), side_b.config(), sides=A_B)
        weights: list[WeightChange] = []
        if not side_a.same_member(side_b, WEIGHTS):
            weights = weight_changes(reader_a, reader_b, progress)
        return DiffReport(
            path_a,
            path_b,
            False,
            versions,
            tuple(_model_lines(side_a.manifest, side_b.manifest)),
            tuple(_object_lines(side_a.manifest.objects, side_b.manifest.objects)),
            tuple(config),
            tuple(weights),
            tuple(_member_lines(side_a, side_b)),
            tuple(notes),
        )


def _archive_path(filepath: Any) -> Path:
    path = existing_path(filepath)
    if sniff(path) == "hdf5":
        raise _UsageError(
            f"{path} is a legacy HDF5 model; diff compares .keras archives. Convert it first: "
            f"keras-safe upgrade {path} {path.with_suffix('.keras')}"
        )
    return path


def _phase(progress: Progress | None, title: str, total: int) -> Callable[[int], None] | None:
    return None if progress is None else progress(title, total)


class _Side:
    """One archive being compared: its manifest and member digests."""

    def __init__(self, reader: ArchiveReader) -> None:
        self.reader = reader
        manifest = read_manifest(reader)
        config = self.config()
        config = check_configs([config], reader.path, reader.limits, manifest=manifest).configs[0]
        if manifest is None:
            manifest = derive_manifest(reader, config)
        self.manifest: Manifest = manifest
        self.digests: dict[str, str] = {}
        self.hashed_bytes = sum(reader.size(name) for name in recorded_members(reader))

    def config(self) -> dict[str, Any]:
        return parse_json(self.reader.read(CONFIG), CONFIG, self.reader.path, self.reader.limits)

    def check(self, advance: Callable[[int], None] | None) -> None:
        """Hash every member; with a manifest, every digest must match it."""
        manifest = self.manifest if self.manifest.written_by == "keras_safe" else None
        if manifest is not None:
            check_member_list(manifest, self.reader)
        self.digests = check_digests(self.reader, manifest, recorded_members(self.reader), advance)

    def same_member(self, other: _Side, name: str) -> bool:
        mine, theirs = self.digests.get(name), other.digests.get(name)
        return mine is not None and mine == theirs


def _version_lines(a: Manifest, b: Manifest) -> Iterator[str]:
    for key, label in ENVIRONMENT_LABELS.items():
        left, right = a.environment.get(key), b.environment.get(key)
        if left != right:
            yield f"{label}: a {left or 'unknown'}, b {right or 'unknown'}"
    if a.written_by != b.written_by:
        yield f"written by: a {a.written_by}, b {b.written_by}"


def _model_lines(a: Manifest, b: Manifest) -> Iterator[str]:
    for label, left, right in (
        ("class", a.model.class_name, b.model.class_name),
        ("name", a.model.name, b.model.name),
        ("layers", a.model.layers, b.model.layers),
        ("parameters", a.model.params, b.model.params),
        ("optimizer values", a.model.optimizer_params, b.model.optimizer_params),
    ):
        if left != right:
            yield f"{label}: a {_number(left)}, b {_number(right)}"


def _number(value: Any) -> str:
    if value is None:
        return "unknown"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _object_lines(a: tuple[ObjectRecord, ...], b: tuple[ObjectRecord, ...]) -> Iterator[str]:
    left, right = {r.key: r for r in a}, {r.key: r for r in b}
    for key in dict.fromkeys([*left, *right]):
        if key not in right:
            yield f"{key}: only in a ({left[key].origin})"
        elif key not in left:
            yield f"{key}: only in b ({right[key].origin})"
        else:
            old, new = left[key], right[key]
            for attribute, label in _OBJECT_FIELDS:
                x, y = getattr(old, attribute), getattr(new, attribute)
                if x != y:
                    yield f"{key}: {label} a {x}, b {y}"
            if old.source_sha256 != new.source_sha256 and old.signature == new.signature:
                yield f"{key}: source code differs"


def _member_lines(a: _Side, b: _Side) -> Iterator[str]:
    names = [n for n in dict.fromkeys([*a.digests, *b.digests]) if n not in (CONFIG, WEIGHTS)]
    for name in names:
        if name not in b.digests:
            yield f"{name}: only in a"
        elif name not in a.digests:
            yield f"{name}: only in b"
        elif not a.same_member(b, name):
            yield f"{name}: contents differ"
