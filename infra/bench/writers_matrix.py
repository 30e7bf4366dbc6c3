"""Batch scoring on files as real tools write them: the same N Telco rows written by pandas,
pyarrow (dictionary and plain encoding, numbers as numbers and as text), Polars and DuckDB, plus
CSV. Each file is scored by `churn score` and by a Python peer — pyarrow + onnxruntime on the
bundle's raw-row ONNX (`churn export`: the same transform in front of the network) — each pinned
to one core, and the rows/s and peak RSS of both are printed side by side, with the largest
difference between their probabilities.

  pip install pandas pyarrow polars duckdb onnxruntime
  cargo build --release -p churn-training --bin churn
  target/release/churn train --out out/model
  python infra/bench/writers_matrix.py --model out/model --rows 1000000

With `--batch-bench target/release/batch-bench --bucket B` (and `AWS_ENDPOINT_URL_S3` plus
credentials of an S3 server in the environment, e.g. the local one from `infra/local/servers.sh`;
`pip install boto3`), each file is also uploaded to `s3://B/incoming/` and scored by the batch
function's own code path (`batch-bench score`: S3 read, scoring, multipart upload of the
results and summary), and its end-to-end rows/s and peak RSS are printed beside the others.

The Python peer does less than `churn score`: it writes the id and the probability only (no
risk tier, action, warnings or rejected-rows file) and stops at the first bad value; it reads
in batches of 65,536 rows, so its memory stays bounded as `churn score`'s does.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
TELCO = os.path.join(ROOT, "training", "data", "telco", "customers.csv")
NUMBERS = {"seniorcitizen": pa.int64(), "tenure": pa.int64(), "monthlycharges": pa.float64(), "totalcharges": pa.float64()}
BATCH = 65_536


def base_rows(n):
    """The bundled Telco rows repeated to n rows, every column as text (as the CSV has them)."""
    opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in pacsv.read_csv(TELCO).column_names}, strings_can_be_null=False)
    t = pacsv.read_csv(TELCO, convert_options=opts)
    reps = -(-n // t.num_rows)
    return pa.concat_tables([t] * reps).slice(0, n).combine_chunks()


def typed(text):
    """Numbers as numbers (the blank totalcharges of new customers as null)."""
    cols = []
    for name in text.column_names:
        c = text[name]
        if name in NUMBERS:
            trimmed = pc.utf8_trim_whitespace(c)
            c = pc.cast(pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed), NUMBERS[name])
        cols.append(c)
    return pa.table(cols, names=text.column_names)


def write_variants(n, out):
    """Writes every variant; returns [(name, path)]."""
    import duckdb
    import pandas as pd
    import polars as pl

    text = base_rows(n)
    numbers = typed(text)
    files = []

    def add(name, ext, write):
        path = os.path.join(out, f"{name}.{ext}")
        write(path)
        files.append((name, path))

    # pandas as a data scientist uses it: read_csv infers the types (totalcharges stays text
    # because of its blanks), to_parquet writes pandas 3's strings as large_string.
    add("pandas", "parquet", lambda p: pd.concat([pd.read_csv(TELCO)] * -(-n // 4930)).iloc[:n].to_parquet(p, index=False))
    add("pyarrow-dictionary", "parquet", lambda p: pq.write_table(numbers, p))
    add("pyarrow-plain", "parquet", lambda p: pq.write_table(numbers, p, use_dictionary=False))
    add("pyarrow-numbers-as-text", "parquet", lambda p: pq.write_table(text, p))
    add("polars", "parquet", lambda p: pl.from_arrow(numbers).write_parquet(p))
    con = duckdb.connect()
    con.register("numbers", numbers)
    add("duckdb", "parquet", lambda p: con.execute(f"COPY numbers TO '{p}' (FORMAT parquet)"))
    add("csv", "csv", lambda p: pacsv.write_csv(text, p))
    return files


def describe(path):
    if not path.endswith(".parquet"):
        return "text", 1
    f = pq.ParquetFile(path)
    types = {str(f.schema_arrow.field(c).type) for c in ("gender", "contract")}
    return "/".join(sorted(types)), f.metadata.num_row_groups


def measure(cmd):
    """Runs cmd on core 0 under GNU time: (its own rows/s, peak RSS MiB). Both scorers time
    themselves from before the model loads to after the output is closed; Python's interpreter
    and library imports are outside that."""
    full = ["taskset", "-c", "0", "/usr/bin/time", "-f", "@@ %e %M"] + cmd
    r = subprocess.run(full, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    kib = re.search(r"@@ [\d.]+ (\d+)", r.stderr).group(1)
    rate = re.search(r"\(([\d.]+) rows/s\)", r.stdout).group(1)
    return float(rate), int(kib) / 1024


def batch_score(bench, model, bucket, name, path):
    """Uploads path to s3://bucket/incoming/ and scores it with `batch-bench score` on core 0:
    (end-to-end rows/s, peak RSS MiB) as it prints them."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    key = f"incoming/{name}.{path.rsplit('.', 1)[1]}"
    # One PutObject, not a multipart upload: for a multipart object the local server (moto)
    # answers a GET with the parts' composite CRC32 as if it were the whole object's, which the
    # AWS SDK then rejects as a corrupt download ("streaming error"); S3 marks it composite.
    single = TransferConfig(multipart_threshold=1 << 40)
    boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3")).upload_file(path, bucket, key, Config=single)
    cmd = ["taskset", "-c", "0", bench, "score", "--model", model, "--bucket", bucket, "--key", key]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    rate = re.search(r"= ([\d.]+) rows/s", r.stdout).group(1)
    rss = re.search(r"peak RSS ([\d.]+) MiB", r.stdout).group(1)
    return float(rate), float(rss)


def python_score(model_raw, path, out):
    """The Python peer: pyarrow batches -> onnxruntime on one thread -> parquet (id, probability)."""
    import numpy as np
    import onnxruntime as ort

    start = time.time()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(model_raw, so, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type) for i in session.get_inputs()]
    if path.endswith(".parquet"):
        batches = pq.ParquetFile(path).iter_batches(batch_size=BATCH)
    else:
        names = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)).column_names
        opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in names}, strings_can_be_null=False)
        batches = pacsv.open_csv(path, convert_options=opts)
    writer = None
    rows = 0
    for b in batches:
        feed = {}
        for name, kind in inputs:
            c = b.column(b.schema.get_field_index(name))
            if kind == "tensor(double)":
                if pa.types.is_string(c.type) or pa.types.is_large_string(c.type) or pa.types.is_string_view(c.type):
                    trimmed = pc.utf8_trim_whitespace(c)
                    c = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)
                feed[name] = pc.cast(c, pa.float64()).to_numpy(zero_copy_only=False)
            else:
                if pa.types.is_dictionary(c.type):
                    c = c.dictionary_decode()
                feed[name] = np.asarray(pc.fill_null(pc.utf8_trim_whitespace(pc.cast(c, pa.string())), "").to_numpy(zero_copy_only=False), dtype=object)
        p = session.run(None, feed)[0].reshape(-1)
        out_batch = pa.record_batch([b.column(b.schema.get_field_index("customerid")), pa.array(p, pa.float64())], names=["customerid", "churn_probability"])
        if writer is None:
            writer = pq.ParquetWriter(out, out_batch.schema)
        writer.write_batch(out_batch)
        rows += b.num_rows
    writer.close()
    print(f"scored {rows} rows ({rows / (time.time() - start):.0f} rows/s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="bundle directory")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--churn", default=os.path.join(ROOT, "target", "release", "churn"))
    ap.add_argument("--dir", help="where to write the files (default: a temporary directory)")
    ap.add_argument("--batch-bench", help="also score every file with this batch-bench binary through the S3 server")
    ap.add_argument("--bucket", help="bucket of the S3 server for --batch-bench (must exist)")
    ap.add_argument("--score-python", nargs=3, metavar=("MODEL_RAW", "INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.score_python:
        return python_score(*a.score_python)
    if a.batch_bench and not a.bucket:
        ap.error("--batch-bench needs --bucket")
    with tempfile.TemporaryDirectory(prefix="churn-writers-") as tmp:
        out = a.dir or tmp
        os.makedirs(out, exist_ok=True)
        raw = os.path.join(out, "model_raw.onnx")
        subprocess.run([a.churn, "export", "--model", a.model, "--out", raw], check=True, capture_output=True)
        t = time.time()
        files = write_variants(a.rows, out)
        print(f"{a.rows} Telco rows written {len(files)} ways in {time.time() - t:.1f} s; scoring on core 0", flush=True)
        head = f"{'file':<24} {'text type':<22} {'groups':>6} {'MB':>6} | {'churn rows/s':>12} {'RSS MiB':>8} | {'python rows/s':>13} {'RSS MiB':>8} | {'ratio':>5} {'max |dp|':>9}"
        if a.batch_bench:
            head += f" | {'batch rows/s':>12} {'RSS MiB':>8}"
        print(head)
        print("-" * len(head))
        for name, path in files:
            kind, groups = describe(path)
            ext = "parquet" if path.endswith(".parquet") else "csv"
            rust_out = os.path.join(out, f"{name}.churn.{ext}")
            py_out = os.path.join(out, f"{name}.python.parquet")
            rs, rmem = measure([a.churn, "score", "--model", a.model, "--input", path, "--output", rust_out])
            ps, pmem = measure([sys.executable, os.path.abspath(__file__), "--model", a.model, "--score-python", raw, path, py_out])
            if ext == "parquet":
                rp = pq.read_table(rust_out, columns=["churn_probability"])["churn_probability"]
            else:
                rp = pacsv.read_csv(rust_out).column("churn_probability")
            pp = pq.read_table(py_out)["churn_probability"]
            dp = pc.max(pc.abs(pc.subtract(pc.cast(rp, pa.float64()), pp))).as_py()
            size = os.path.getsize(path) / 1e6
            line = f"{name:<24} {kind:<22} {groups:>6} {size:>6.1f} | {rs:>12,.0f} {rmem:>8.0f} | {ps:>13,.0f} {pmem:>8.0f} | {rs / ps:>5.2f} {dp:>9.1e}"
            if a.batch_bench:
                bs, bmem = batch_score(a.batch_bench, a.model, a.bucket, name, path)
                line += f" | {bs:>12,.0f} {bmem:>8.0f}"
            print(line, flush=True)
            for p in (rust_out, py_out):
                os.remove(p)


if __name__ == "__main__":
    main()
