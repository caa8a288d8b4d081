"""The gate for schema evolution: each version of a schema must read the previous one's data
and be readable by it (checked with the reference `avro` package's checker)."""

from __future__ import annotations

import itertools
import json

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.codec import CODEC, Codec, Schema


def _reference(schema: Schema) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(schema.definition))


def problems(codec: Codec = CODEC) -> list[str]:
    """Every pair of consecutive versions that cannot read each other, described."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    found = []
    for name, versions in codec.versions.items():
        for old, new in itertools.pairwise(versions):
            for reader, writer in ((new, old), (old, new)):
                result = checker.get_compatibility(_reference(reader), _reference(writer))
                if result.compatibility is not SchemaCompatibilityType.compatible:
                    found.append(f"{name} v{reader.version} cannot read v{writer.version}: "
                                 f"{'; '.join(result.messages)}")
    return found
