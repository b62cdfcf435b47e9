"""The manifest: JSON round trip, validation of stored manifests, digests, HMAC."""

from __future__ import annotations

import copy
import json

import pytest

import keras_safe
from keras_safe._format.manifest import (
    FORMAT_VERSION,
    Manifest,
    MemberRecord,
    ModelSummary,
    ObjectRecord,
    content_digest,
    describe_object,
)

SHA = "ab" * 32


def example() -> Manifest:
    members = {
        "config.json": MemberRecord(SHA, 10),
        "model.weights.h5": MemberRecord("cd" * 32, 99),
    }
    return Manifest(
        format_version=FORMAT_VERSION,
        environment={"keras": "3.15.1", "tensorflow": "2.21.0"},
        saved_at="2026-01-01T00:00:00+00:00",
        model=ModelSummary("Functional", "net", 3, 10, 2, 24),
        objects=(ObjectRecord("p>Layer", "layer", "p.layers", "Layer", "p", "1.0", "(self)", SHA),),
        members=members,
        digest=content_digest(members),
    )


def test_json_round_trip() -> None:
    manifest = example()
    data = json.loads(json.dumps(manifest.to_json()))
    assert Manifest.from_json(data) == manifest
    assert manifest.keras_version == "3.15.1" and manifest.tensorflow_version == "2.21.0"
    assert manifest.object("p>Layer").origin == "module p.layers, distribution p 1.0"
    assert manifest.object("missing") is None
    assert manifest.model.params == 12


def test_content_digest_depends_on_every_member_and_not_on_order() -> None:
    manifest = example()
    swapped = dict(reversed(list(manifest.members.items())))
    assert content_digest(swapped) == manifest.digest
    changed = {**manifest.members, "config.json": MemberRecord("ef" * 32, 10)}
    assert content_digest(changed) != manifest.digest


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("format"), "no valid format"),
        (lambda d: d.update(format=FORMAT_VERSION + 1), "Upgrade keras_safe"),
        (lambda d: d.update(objects={"not": "a list"}), "objects should be a list"),
        (lambda d: d["objects"].append({"kind": "layer"}), "has no key"),
        (lambda d: d["objects"][0].update(module=3), "should be a string"),
        (lambda d: d["members"]["config.json"].update(sha256="xyz"), "'config.json' is malformed"),
        (lambda d: d["members"]["config.json"].update(size=-1), "'config.json' is malformed"),
        (lambda d: d.update(model=[]), "model should be an object"),
        (lambda d: d.update(signature={"algorithm": "md5", "value": "x"}), "hmac-sha256"),
    ],
)
def test_malformed_manifests_are_integrity_errors(edit, message) -> None:
    data = copy.deepcopy(example().to_json())
    edit(data)
    with pytest.raises(keras_safe.IntegrityError, match=message):
        Manifest.from_json(data)
    with pytest.raises(keras_safe.IntegrityError):
        Manifest.from_json(["not", "a", "dict"])


def test_hmac_signs_the_whole_manifest() -> None:
    signed = example().signed(b"key")
    assert signed.signature_matches(b"key") and not signed.signature_matches(b"other")
    assert Manifest.from_json(signed.to_json()).signature_matches(b"key")
    tampered = Manifest.from_json({**signed.to_json(), "saved_at": "yesterday"})
    assert not tampered.signature_matches(b"key")
    assert not example().signature_matches(b"key")  # unsigned
    with pytest.raises(TypeError, match="non-empty bytes"):
        example().signed(b"")


def test_describe_object_strips_memory_addresses_from_signatures() -> None:
    def function(x, fallback=lambda y: y):
        return x

    record = describe_object("p>function", function, "function", (None, None))
    assert "0x" not in (record.signature or "")
    assert record.signature.startswith("(x, fallback=<function")
    assert len(record.source_sha256 or "") == 64
    assert record.module == __name__ and record.qualname.endswith("function")
