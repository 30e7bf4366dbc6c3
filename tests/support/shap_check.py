"""Reference SHAP values from Python's `shap` package, for tests/explain.rs.

The model explained is the bundle as `churn score` runs it (raw fields in, calibrated probability
out): `shap.KernelExplainer` (an estimator independent of the Rust one: weighted linear
regression over sampled coalitions, not permutation walks) calls a function that writes the
synthetic customers it asks about to a CSV, scores them with the `churn` binary and reads the
probabilities back. Fields are passed to shap as integer codes of their text values, since
categorical fields have no numeric form; the background sample is the bundle's own
`background.json`, so both sides explain against the same customers.

usage: shap_check.py <churn binary> <bundle dir> <data.csv> <0-based rows, comma separated> <out.json> [nsamples]
"""

import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import shap


def main():
    churn, bundle, data, rows, out = sys.argv[1:6]
    nsamples = int(sys.argv[6]) if len(sys.argv) > 6 else 2048
    rows = [int(r) for r in rows.split(",")]
    with open(os.path.join(bundle, "background.json")) as f:
        bg = json.load(f)
    columns = bg["columns"]
    background = [[v if v is not None else "" for v in r] for r in bg["rows"]]
    with open(data, newline="") as f:
        table = list(csv.DictReader(f))
    customers = [[table[i][c].strip() for c in columns] for i in rows]

    # One code table per field over every value shap can combine.
    values = [sorted({r[j] for r in background + customers}) for j in range(len(columns))]
    index = [{v: k for k, v in enumerate(vs)} for vs in values]

    def encode(rs):
        return np.array([[index[j][r[j]] for j in range(len(columns))] for r in rs], dtype=float)

    tmp = tempfile.mkdtemp(prefix="shap-check-")
    calls = {"n": 0, "rows": 0}

    def model(x):
        x = np.atleast_2d(x)
        src, dst = os.path.join(tmp, "in.csv"), os.path.join(tmp, "out.csv")
        with open(src, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            for r in x.astype(int):
                w.writerow([values[j][k] for j, k in enumerate(r)])
        subprocess.run([churn, "score", "--model", bundle, "--input", src, "--output", dst],
                       check=True, stdout=subprocess.DEVNULL)
        with open(dst, newline="") as f:
            scored = list(csv.DictReader(f))
        if len(scored) != len(x) or any(s["error"] for s in scored):
            raise SystemExit(f"churn score returned {len(scored)} rows for {len(x)}, or errors")
        calls["n"] += 1
        calls["rows"] += len(x)
        return np.array([float(s["churn_probability"]) for s in scored])

    np.random.seed(0)
    explainer = shap.KernelExplainer(model, encode(background))
    # l1_reg=False: every field gets a value (the default keeps only 10 of them).
    sv = explainer.shap_values(encode(customers), nsamples=nsamples, l1_reg=False, silent=True)
    with open(out, "w") as f:
        json.dump({
            "fields": columns,
            "rows": rows,
            "expected_value": float(np.ravel(explainer.expected_value)[0]),
            "shap": np.asarray(sv).tolist(),
            "model_calls": calls["n"],
            "model_rows": calls["rows"],
            "shap_version": shap.__version__,
        }, f)


if __name__ == "__main__":
    main()
