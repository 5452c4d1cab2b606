"""Spark types written as DDL text, for casts and pandas-UDF schemas that mean the same on
classic Spark, Sail and a JVM Spark Connect server.

Through Spark Connect (pyspark 4.2 client, JVM Spark 4.2 server), a `StringType()` *object*
in `Column.cast(...)` or in a `mapInPandas` schema reaches the server as an explicitly collated
`string collate UTF8_BINARY`. A Delta table created from such a column stores that type in its
schema, and delta-rs (deltalake 1.6, which `cardscore.tables` uses for versions and history)
then refuses the whole table: "Unsupported Delta table type: 'string collate UTF8_BINARY'".
The same type as DDL text (`"string"`) is a plain string on every engine; classic Spark and
Sail are not affected either way. tests/cluster/test_delta_interop.py reproduces the Connect
behaviour: when it stops, these helpers can go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType


def ddl_type(dtype: DataType) -> str:
    """`dtype` as DDL text ("string", "bigint", "decimal(38,6)", ...) for `Column.cast`."""
    return dtype.simpleString()


def ddl_schema(schema: StructType) -> str:
    """`schema` as DDL text ("`a` bigint NOT NULL, `b` string") for `mapInPandas` and friends."""
    return ", ".join(
        f"`{f.name.replace('`', '``')}` {ddl_type(f.dataType)}{'' if f.nullable else ' NOT NULL'}"
        for f in schema.fields
    )
