"""The contract in schemas/ gives the same columns, types and nullability to Spark and Arrow."""

import datetime as dt

import pyarrow as pa
import pytest

from radgpt.schema import ContractError, arrow_schema, check_arrow, field_names, spark_schema


@pytest.mark.parametrize("name", ["reports", "quarantine", "drafts"])
def test_spark_and_arrow_agree(name, spark):
    a, s = arrow_schema(name), spark_schema(name)
    assert a.names == s.fieldNames() == field_names(name)
    assert [f.nullable for f in a] == [f.nullable for f in s.fields]
    # an empty Arrow table of the contract converts to the Spark schema without loss
    df = spark.createDataFrame(a.empty_table().to_pandas(), schema=s)
    assert df.schema == s


def test_check_arrow_fails_loudly():
    good = arrow_schema("quarantine").empty_table()
    check_arrow(good, "quarantine")
    with pytest.raises(ContractError, match="missing column reason"):
        check_arrow(good.drop(["reason"]), "quarantine")
    row = {n: None for n in good.schema.names}
    row.update(source="csv", source_uri="x", ingest_run_id="r", ingested_at=dt.datetime.now(dt.UTC))
    loose = pa.schema([f.with_nullable(True) for f in good.schema])
    t = pa.Table.from_pylist([row], schema=loose)
    with pytest.raises(ContractError, match="reason: 1 nulls"):
        check_arrow(t, "quarantine")
