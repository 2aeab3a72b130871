"""The data contract: `schemas/*.json` -> pyarrow schema and Spark StructType (one source of truth).

from radgpt.schema import arrow_schema, spark_schema, check_arrow
arrow_schema("reports"); spark_schema("drafts")
token("http://loinc.org", "36643-5")   # "http://loinc.org|36643-5": a code or identifier in one column
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pyarrow as pa

SCHEMA_DIR = Path(
    os.environ.get("RADGPT_SCHEMAS", Path(__file__).resolve().parent.parent / "schemas")
)


class ContractError(ValueError):
    """Data does not match the contract in schemas/."""


@functools.cache
def spec(name: str) -> dict:
    p = SCHEMA_DIR / f"{name}.json"
    if not p.is_file():
        raise ContractError(f"no schema {name!r} in {SCHEMA_DIR} (set RADGPT_SCHEMAS)")
    return json.loads(p.read_text())


def field_names(name: str) -> list[str]:
    return [f["name"] for f in spec(name)["fields"]]


_ARROW = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "map<string,string>": pa.map_(pa.string(), pa.string()),
    "list<string>": pa.list_(pa.string()),
}


def arrow_schema(name: str) -> pa.Schema:
    s = spec(name)
    return pa.schema(
        [pa.field(f["name"], _ARROW[f["type"]], nullable=f["nullable"]) for f in s["fields"]],
        metadata={"radgpt.schema": name, "radgpt.schema_version": str(s["version"])},
    )


def spark_schema(name: str):
    from pyspark.sql import types as T

    m = {
        "string": T.StringType(),
        "int32": T.IntegerType(),
        "int64": T.LongType(),
        "float64": T.DoubleType(),
        "bool": T.BooleanType(),
        "timestamp": T.TimestampType(),
        "map<string,string>": T.MapType(T.StringType(), T.StringType()),
        "list<string>": T.ArrayType(T.StringType()),
    }
    return T.StructType(
        [T.StructField(f["name"], m[f["type"]], f["nullable"]) for f in spec(name)["fields"]]
    )


def check_arrow(table: pa.Table, name: str) -> None:
    """Fail loudly when a table breaks the contract: missing columns, wrong types, nulls."""
    want = arrow_schema(name)
    problems = []
    for f in want:
        if f.name not in table.column_names:
            problems.append(f"missing column {f.name}")
            continue
        got = table.schema.field(f.name).type
        if not got.equals(f.type) and not (
            pa.types.is_timestamp(got) and pa.types.is_timestamp(f.type)
        ):
            problems.append(f"{f.name}: type {got} != {f.type}")
        if not f.nullable and table.column(f.name).null_count:
            problems.append(
                f"{f.name}: {table.column(f.name).null_count} nulls in a non-null field"
            )
    if problems:
        raise ContractError(f"{name} contract broken: " + "; ".join(problems))


def token(system: str | None, value: str) -> str:
    """A code or identifier in one string column, in FHIR's search-token form: "system|value", or
    the value alone when the source names no system (columns exam_code, accession)."""
    return f"{system}|{value}" if system else value


def split_token(tok: str) -> tuple[str | None, str]:
    """ "system|value" -> (system, value); "value" -> (None, value). Systems are URIs (no "|")."""
    system, bar, value = tok.partition("|")
    return (system or None, value) if bar else (None, tok)
