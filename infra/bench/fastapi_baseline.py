"""The Python baseline of the prediction benchmark: the same bundle served by FastAPI +
onnxruntime, the way a Python team would serve it. It re-implements the bundle's feature transform
from feature_spec.json (imputation, range checks, derived features, clipping, scaling, one-hot)
and the playbook's tiers. It does less than the Rust function: no per-field validation report and
no reasons. For equal work run the Rust function with REASONS_METHOD=none (README, Benchmarks).

  pip install fastapi uvicorn onnxruntime numpy
  MODEL_DIR=out/model uvicorn --app-dir infra/bench fastapi_baseline:app --host 127.0.0.1 --port 8081 --workers 1
  wrk -t2 -c16 -d20s --latency -s infra/bench/wrk-predict.lua http://127.0.0.1:8081/predict
"""
import json
import math
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

BUNDLE = os.environ.get("MODEL_DIR", "out/model")
spec = json.load(open(os.path.join(BUNDLE, "feature_spec.json")))
playbook = json.load(open(os.path.join(BUNDLE, "playbook.json")))
session = ort.InferenceSession(os.path.join(BUNDLE, "model.onnx"), providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name

numeric = spec["numeric"]
categorical = spec["categorical"]
num_slot = {f["name"]: i for i, f in enumerate(numeric)}
cat_slot = {c["name"]: i for i, c in enumerate(categorical)}
vocab = [{v: i for i, v in enumerate(c["vocabulary"])} for c in categorical]
offsets = []
width = len(numeric)
for c in categorical:
    offsets.append(width)
    width += len(c["vocabulary"])


def fmt(x):
    """A number as the Rust transform writes it (integers without a decimal point)."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def bucket_label(edges, i):
    if i == 0:
        return f"<{fmt(edges[0])}"
    if i == len(edges):
        return f">={fmt(edges[-1])}"
    return f"{fmt(edges[i - 1])}-{fmt(edges[i])}"


def features(rec):
    nv = [math.nan] * len(numeric)
    cv = [None] * len(categorical)
    for col in spec["inputs"]:
        name = col["name"]
        value = rec.get(name)
        if col["kind"] == "numeric":
            i = num_slot[name]
            if value is None or (isinstance(value, str) and not value.strip()):
                nv[i] = numeric[i]["impute"]
            else:
                x = float(value)
                if not (col["valid_min"] <= x <= col["valid_max"]):
                    raise ValueError(f"{name} out of range")
                nv[i] = x
        else:
            i = cat_slot[name]
            if value is None:
                cv[i] = None
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                cv[i] = fmt(value)
            else:
                cv[i] = str(value).strip() or None
    for d in spec["derived"]:
        kind = d["kind"]
        if kind == "ratio":
            den = nv[num_slot[d["denominator"]]]
            if den == 0:
                v = nv[num_slot[d["when_zero"]]] if d.get("when_zero") else 0.0
            else:
                v = nv[num_slot[d["numerator"]]] / den
            o = num_slot[d["name"]]
            nv[o] = v if math.isfinite(v) else numeric[o]["impute"]
        elif kind == "difference":
            v = nv[num_slot[d["left"]]] - nv[num_slot[d["right"]]]
            o = num_slot[d["name"]]
            nv[o] = v if math.isfinite(v) else numeric[o]["impute"]
        elif kind == "count_equal":
            nv[num_slot[d["name"]]] = float(sum(1 for c in d["columns"] if cv[cat_slot[c]] in d["values"]))
        elif kind == "bucket":
            x = nv[num_slot[d["column"]]]
            edges = d["edges"]
            cv[cat_slot[d["name"]]] = bucket_label(edges, sum(1 for e in edges if x >= e)) if math.isfinite(x) else None
    out = np.zeros(width, dtype=np.float32)
    for i, f in enumerate(numeric):
        x = min(max(nv[i], f["clip_min"]), f["clip_max"])
        out[i] = (x - f["mean"]) / f["std"]
    for i, c in enumerate(cv):
        k = vocab[i].get(c) if c is not None else None
        if k is not None:
            out[offsets[i] + k] = 1.0
    return out


def tier(p):
    for t in playbook["tiers"]:
        if p >= t["min_probability"]:
            return t
    return playbook["tiers"][-1]


app = FastAPI()


@app.post("/predict")
async def predict(request: Request):
    body = await request.json()
    customers = body["customers"] if "customers" in body else [body]
    try:
        x = np.stack([features(c) for c in customers])
    except (ValueError, TypeError, KeyError) as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    p = session.run(None, {input_name: x})[0].reshape(-1)
    preds = []
    for c, prob in zip(customers, p):
        t = tier(float(prob))
        preds.append({"customer_id": c.get(spec["id_column"]), "churn_probability": float(prob), "risk_tier": t["name"], "action": t["action"]})
    return {"predictions": preds}
