"""Declarative data contracts: one definition, from which every other schema is derived.

A `Contract` lists typed fields with their constraints. From it come the Spark schema
(`spark_schema`), the Arrow schema (`arrow_schema`, microsecond UTC timestamps) and the
JSON Schema for Kafka messages (`json_schema`). The Python record validator in
`schemas.validation` and the Spark validator used by ingest both read the same constraints,
so the batch and the stream paths accept and reject exactly the same records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cardscore.schemas.timestamps import TIMESTAMP_PATTERN, format_timestamp_us

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import StructType


class FieldType(StrEnum):
    LONG = "long"
    DOUBLE = "double"
    STRING = "string"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"  # microseconds, UTC
    DATE = "date"
    INT = "int"


__all__ = ["DATE_PATTERN", "TIMESTAMP_PATTERN", "Contract", "Field", "FieldType"]

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


@dataclass(frozen=True)
class Field:
    """A typed field. `minimum`/`maximum` bound numbers (inclusive); on a TIMESTAMP field they
    are epoch microseconds (the validators compare the parsed instant, the JSON Schema states
    them as RFC 3339 texts)."""

    name: str
    type: FieldType
    description: str
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type.value, "nullable": self.nullable}
        for key in ("minimum", "maximum", "max_length"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class Contract:
    """A named, versioned record schema with constraints."""

    name: str
    version: int
    description: str
    fields: tuple[Field, ...]
    key: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    _index: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {f.name: f for f in self.fields}
        if len(index) != len(self.fields):
            raise ValueError(f"contract {self.name}: duplicate field names")
        for name in (*self.key, *self.partition_by):
            if name not in index:
                raise ValueError(f"contract {self.name}: key/partition field {name!r} is not a field")
        object.__setattr__(self, "_index", index)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if not f.nullable]

    def field(self, name: str) -> Field:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"contract {self.name} has no field {name!r}") from None

    def spark_schema(self) -> StructType:
        from pyspark.sql import types as T

        spark_types = {
            FieldType.LONG: T.LongType(),
            FieldType.INT: T.IntegerType(),
            FieldType.DOUBLE: T.DoubleType(),
            FieldType.STRING: T.StringType(),
            FieldType.BOOLEAN: T.BooleanType(),
            FieldType.TIMESTAMP: T.TimestampType(),
            FieldType.DATE: T.DateType(),
        }
        return T.StructType(
            [T.StructField(f.name, spark_types[f.type], nullable=f.nullable) for f in self.fields]
        )

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        arrow_types = {
            FieldType.LONG: pa.int64(),
            FieldType.INT: pa.int32(),
            FieldType.DOUBLE: pa.float64(),
            FieldType.STRING: pa.string(),
            FieldType.BOOLEAN: pa.bool_(),
            FieldType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
            FieldType.DATE: pa.date32(),
        }
        return pa.schema(
            [pa.field(f.name, arrow_types[f.type], nullable=f.nullable) for f in self.fields]
        )

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of the record as it travels in JSON (landing files, Kafka)."""
        properties: dict[str, Any] = {}
        for f in self.fields:
            prop = _json_type(f)
            if f.description:
                prop["description"] = f.description
            if f.nullable:
                prop = {"anyOf": [prop, {"type": "null"}]}
            properties[f.name] = prop
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:cardscore:schema:{self.name}:v{self.version}",
            "title": self.name,
            "description": self.description,
            "type": "object",
            "properties": properties,
            "required": self.required,
            # Unknown fields are tolerated so producers can add fields before consumers do.
            "additionalProperties": True,
            "x-cardscore-version": self.version,
            "x-cardscore-key": list(self.key),
        }

    def snapshot(self) -> dict[str, Any]:
        """The committed, comparable description of this version (schemas/snapshots)."""
        return {
            "name": self.name,
            "version": self.version,
            "key": list(self.key),
            "fields": [f.to_dict() for f in self.fields],
        }


def _json_type(f: Field) -> dict[str, Any]:
    if f.type in (FieldType.LONG, FieldType.INT):
        prop: dict[str, Any] = {"type": "integer"}
    elif f.type == FieldType.DOUBLE:
        prop = {"type": "number"}
    elif f.type == FieldType.BOOLEAN:
        prop = {"type": "boolean"}
    elif f.type == FieldType.TIMESTAMP:
        prop = {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}
    elif f.type == FieldType.DATE:
        prop = {"type": "string", "format": "date", "pattern": DATE_PATTERN}
    else:
        prop = {"type": "string"}
    if f.type == FieldType.TIMESTAMP:
        # JSON Schema's minimum/maximum bound numbers; a date-time's bounds are format
        # bounds (the `formatMinimum`/`formatMaximum` keywords of ajv-formats), as text.
        if f.minimum is not None:
            prop["formatMinimum"] = format_timestamp_us(int(f.minimum))
        if f.maximum is not None:
            prop["formatMaximum"] = format_timestamp_us(int(f.maximum))
    else:
        if f.minimum is not None:
            prop["minimum"] = f.minimum
        if f.maximum is not None:
            prop["maximum"] = f.maximum
    if f.max_length is not None:
        prop["maxLength"] = f.max_length
    return prop
