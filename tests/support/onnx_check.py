"""Independent reader of the ONNX we write: checks the model with onnx's full checker and scores
the feature rows with onnxruntime.

usage: onnx_check.py MODEL.onnx FEATURES.json OUT.json
FEATURES.json: {"rows": N, "width": F, "x": [N*F floats]}; OUT.json gets {"p": [...], "inputs": ..., "outputs": ...}.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_path, features_path, out_path = sys.argv[1:4]
model = onnx.load(model_path)
onnx.checker.check_model(model, full_check=True)
feats = json.load(open(features_path))
x = np.asarray(feats["x"], dtype=np.float32).reshape(feats["rows"], feats["width"])
sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
out = sess.get_outputs()[0]
p = sess.run([out.name], {inp.name: x})[0].reshape(-1)
# A second, differently sized batch proves the batch dimension is dynamic.
p1 = sess.run([out.name], {inp.name: x[:1]})[0].reshape(-1)
assert abs(float(p1[0]) - float(p[0])) < 1e-6, (p1, p[0])
json.dump({
    "p": [float(v) for v in p],
    "input": {"name": inp.name, "shape": [str(d) for d in inp.shape]},
    "output": {"name": out.name, "shape": [str(d) for d in out.shape]},
    "opset": [o.version for o in model.opset_import],
    "ir_version": model.ir_version,
}, open(out_path, "w"))
