"""Independent reader of the raw-row model (the transform compiled into ONNX in front of the
network): checks it with onnx's full checker and scores a CSV of raw customer rows, read by
pandas as a data scientist would read it, through the module MLflow loads (churn_pyfunc).

usage: raw_rows_check.py MODEL_RAW.onnx ROWS.csv OUT.json [DROPPED_COLUMN]
OUT.json gets {"p": [...], "inputs": {name: type}}. DROPPED_COLUMN is removed from the
DataFrame before predicting (a column the caller does not have).
"""
import json
import os
import sys

import onnx
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "training", "python"))
import churn_pyfunc  # noqa: E402

model_path, rows_path, out_path = sys.argv[1:4]
dropped = sys.argv[4:5]
onnx.checker.check_model(onnx.load(model_path), full_check=True)
model = churn_pyfunc._load_pyfunc(model_path)
df = pd.read_csv(rows_path).drop(columns=dropped)
p = model.predict(df)["churn_probability"]
# One row alone gives the same answer (the batch dimension is dynamic, rows are independent).
one = model.predict(df.iloc[:1])["churn_probability"]
assert abs(float(one.iloc[0]) - float(p.iloc[0])) < 1e-7, (one, p.iloc[0])
json.dump({"p": [float(v) for v in p], "inputs": dict(model.inputs)}, open(out_path, "w"))
