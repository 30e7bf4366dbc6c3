"""Python side of the S3 / MLflow end-to-end tests: independent clients (boto3, mlflow) that
check what the Rust code wrote. Reads AWS_ENDPOINT_URL_S3 and MLFLOW_TRACKING_URI from the env.

  aws_mlflow.py create-bucket BUCKET
  aws_mlflow.py corrupt BUCKET KEY              # overwrite an object with other bytes
  aws_mlflow.py versions NAME                   # JSON list of {version, aliases, tags}
  aws_mlflow.py pyfunc MODEL_URI ROWS_CSV N     # mlflow.pyfunc on the first N raw rows: JSON {p, schema, example}
  aws_mlflow.py run RUN_ID                      # JSON {params, tags, status, curves, metrics, datasets, artifacts}
  aws_mlflow.py put BUCKET KEY FILE             # upload a file (boto3's managed transfer)
  aws_mlflow.py get BUCKET KEY FILE             # download an object; exit 3 when it does not exist
  aws_mlflow.py head BUCKET KEY                 # JSON {etag, size} or null
  aws_mlflow.py keys BUCKET PREFIX              # JSON list of keys under a prefix
  aws_mlflow.py csv-to-parquet CSV PARQUET ROWS_PER_GROUP   # typed columns, as pyarrow infers them
  aws_mlflow.py pandas-parquet CSV PARQUET      # as pandas writes it (text as large_string, blank numbers as text)
  aws_mlflow.py parquet-json PARQUET            # JSON {columns, types, rows: [[...], ...]} read by pyarrow
  aws_mlflow.py repeat-parquet IN OUT TIMES     # IN's rows TIMES over (fresh ids), 128 Ki-row groups
  aws_mlflow.py parquet-rows PARQUET            # the row count pyarrow reads
"""
import json
import sys


def main():
    cmd = sys.argv[1]
    if cmd == "create-bucket":
        import boto3
        boto3.client("s3").create_bucket(Bucket=sys.argv[2])
    elif cmd == "corrupt":
        import boto3
        s3 = boto3.client("s3")
        s3.delete_object(Bucket=sys.argv[2], Key=sys.argv[3])
        s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=b"not the bytes the manifest names")
    elif cmd == "versions":
        from mlflow import MlflowClient
        c = MlflowClient()
        try:
            vs = c.search_model_versions(f"name='{sys.argv[2]}'")
        except Exception:
            vs = []
        vs = [c.get_model_version(sys.argv[2], v.version) for v in vs]  # search omits aliases
        print(json.dumps([{"version": v.version, "aliases": sorted(v.aliases), "tags": v.tags} for v in vs]))
    elif cmd == "set-version-tag":
        from mlflow import MlflowClient
        MlflowClient().set_model_version_tag(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif cmd == "pyfunc":
        # As a data scientist would: read the customers with pandas (whole numbers as int64,
        # totalcharges as text because of its blanks) and predict.
        import mlflow.pyfunc
        import pandas as pd
        model = mlflow.pyfunc.load_model(sys.argv[2])
        schema = model.metadata.get_input_schema()
        df = pd.read_csv(sys.argv[3]).head(int(sys.argv[4]))
        out = model.predict(df)
        info = mlflow.models.get_model_info(sys.argv[2])
        # The input example the UI shows is itself a valid input.
        local = mlflow.artifacts.download_artifacts(sys.argv[2])
        example = mlflow.models.Model.load(local).load_input_example(local)
        example_p = [float(v) for v in model.predict(example)["churn_probability"]]
        print(json.dumps({
            "p": [float(v) for v in out["churn_probability"]],
            "schema": [{"name": c.name, "type": getattr(c.type, "name", str(c.type)), "required": c.required} for c in schema.inputs],
            "example": info.saved_input_example_info,
            "example_p": example_p,
            "flavors": sorted(info.flavors),
        }))
    elif cmd == "run":
        from mlflow import MlflowClient
        c = MlflowClient()
        r = c.get_run(sys.argv[2])
        curves = {k: len(c.get_metric_history(r.info.run_id, k)) for k in ("train_loss", "validation_loss", "validation_auc")}
        artifacts = sorted(f.path for f in c.list_artifacts(r.info.run_id, "model"))
        print(json.dumps({
            "params": r.data.params, "tags": r.data.tags, "status": r.info.status, "metrics": r.data.metrics,
            "curves": curves, "datasets": [d.dataset.digest for d in r.inputs.dataset_inputs], "artifacts": artifacts,
        }))
    elif cmd == "put":
        import boto3
        boto3.client("s3").upload_file(sys.argv[4], sys.argv[2], sys.argv[3])
    elif cmd == "get":
        import boto3
        import botocore.exceptions
        try:
            boto3.client("s3").download_file(sys.argv[2], sys.argv[3], sys.argv[4])
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] in ("404", "NoSuchKey"):
                raise SystemExit(3)
            raise
    elif cmd == "head":
        import boto3
        import botocore.exceptions
        try:
            h = boto3.client("s3").head_object(Bucket=sys.argv[2], Key=sys.argv[3])
            print(json.dumps({"etag": h["ETag"], "size": h["ContentLength"], "metadata": h.get("Metadata", {})}))
        except botocore.exceptions.ClientError:
            print("null")
    elif cmd == "keys":
        import boto3
        pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix=sys.argv[3])
        print(json.dumps(sorted(o["Key"] for p in pages for o in p.get("Contents", []))))
    elif cmd == "csv-to-parquet":
        import pyarrow.csv
        import pyarrow.parquet
        t = pyarrow.csv.read_csv(sys.argv[2])
        pyarrow.parquet.write_table(t, sys.argv[3], row_group_size=int(sys.argv[4]))
    elif cmd == "pandas-parquet":
        import pandas as pd
        df = pd.read_csv(sys.argv[2])
        df.to_parquet(sys.argv[3], index=False)
        import pyarrow.parquet
        print(json.dumps({f.name: str(f.type) for f in pyarrow.parquet.read_schema(sys.argv[3])}))
    elif cmd == "parquet-json":
        import pyarrow.parquet
        t = pyarrow.parquet.read_table(sys.argv[2])
        print(json.dumps({
            "columns": t.column_names, "types": [str(f.type) for f in t.schema],
            "rows": [list(r.values()) for r in t.to_pylist()],
        }))
    elif cmd == "repeat-parquet":
        import pyarrow as pa
        import pyarrow.parquet
        t = pyarrow.parquet.read_table(sys.argv[2])
        times = int(sys.argv[4])
        big = pa.concat_tables([t] * times)
        ids = pa.array([f"R{i:08d}" for i in range(big.num_rows)])
        big = big.set_column(big.schema.get_field_index("customerid"), "customerid", ids)
        pyarrow.parquet.write_table(big, sys.argv[3], row_group_size=128 * 1024)
    elif cmd == "parquet-rows":
        import pyarrow.parquet
        print(pyarrow.parquet.ParquetFile(sys.argv[2]).metadata.num_rows)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
