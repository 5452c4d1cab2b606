"""String types that mean the same on classic Spark, Sail and a JVM Spark Connect server.

Through Spark Connect (pyspark 4.2 client, JVM Spark 4.2 server), a `StringType()` *object* in
`Column.cast(...)`, and any string column a pandas UDF (`mapInPandas`) returns, reach the server
as an explicitly collated `string collate UTF8_BINARY`. A Delta table created from such a
column stores that type in its schema, and delta-rs (deltalake 1.6, which `cardscore.core.lake`
uses for versions and history) then refuses the whole table: "Unsupported Delta table type:
'string collate UTF8_BINARY'". Cast with the type as DDL text (`ddl_type`: `"string"`) and pass
pandas-UDF output through `plain_strings`: plain strings on every engine. Classic Spark and Sail
are not affected. tests/cluster/test_delta_interop.py reproduces the Connect behaviour: when it
stops, these helpers can go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType


def ddl_type(dtype: DataType) -> str:
    """`dtype` as DDL text ("string", "bigint", "decimal(38,6)", ...) for `Column.cast`."""
    return dtype.simpleString()


def plain_strings(df: DataFrame) -> DataFrame:
    """`df` with every (top-level) string column cast to DDL `string`: the output of a pandas UDF
    (`mapInPandas`) through Spark Connect has collated strings even when its schema is given as
    DDL text; the cast makes them plain. A no-op projection on other engines."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    columns = []
    for field in df.schema.fields:
        column = F.col(f"`{field.name}`")
        columns.append(column.cast("string").alias(field.name) if isinstance(field.dataType, StringType) else column)
    return df.select(*columns)
