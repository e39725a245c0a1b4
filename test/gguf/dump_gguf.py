"""Dumps a GGUF file as JSON using gguf-py's GGUFReader (llama.cpp's own Python reader), for the writer tests.

usage: dump_gguf.py GGUF_PY_DIR FILE.gguf
64-bit integers are printed as strings (JSON numbers would lose precision); floats as Python floats (exact
for float32/float64 values); tensor shapes row-major; tensor data flattened and widened to float.
"""
import json
import sys
import types

sys.path.insert(0, sys.argv[1])
try:
    import yaml  # noqa: F401  (gguf.metadata imports it at import time; the reader never uses it)
except ImportError:
    sys.modules["yaml"] = types.ModuleType("yaml")

import numpy as np  # noqa: E402
from gguf.constants import GGMLQuantizationType, GGUFValueType  # noqa: E402
from gguf.gguf_reader import GGUFReader  # noqa: E402


def scalar(vtype, v):
    if vtype in (GGUFValueType.UINT64, GGUFValueType.INT64):
        return str(int(v))
    if vtype == GGUFValueType.BOOL:
        return bool(v)
    if vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return float(v)
    if vtype == GGUFValueType.STRING:
        return v
    return int(v)


reader = GGUFReader(sys.argv[2])
meta = {}
for name, field in reader.fields.items():
    if name.startswith("GGUF."):
        continue  # the reader's own pseudo-fields (version, counts)
    main = field.types[0]
    if main == GGUFValueType.ARRAY:
        # gguf-py records the item type in `types` only for non-empty arrays; parts[3] is the raw item type.
        sub = field.types[-1] if len(field.types) > 1 else GGUFValueType(int(field.parts[3][0]))
        meta[name] = {"type": "array", "itemType": sub.name.lower(), "value": [scalar(sub, x) for x in field.contents()]}
    else:
        meta[name] = {"type": main.name.lower(), "value": scalar(main, field.contents())}

tensors = []
for t in reader.tensors:
    raw = np.asarray(t.data)
    if t.tensor_type == GGMLQuantizationType.BF16:
        vals = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        vals = raw.astype(np.float32)
    tensors.append({
        "name": t.name,
        "type": t.tensor_type.name,
        "shape": [int(d) for d in reversed(t.shape.tolist())],
        "offset": int(t.data_offset),
        "data": [float(x) for x in vals.reshape(-1)],
    })

json.dump({"alignment": int(reader.alignment), "metadata": meta, "tensors": tensors}, sys.stdout)
