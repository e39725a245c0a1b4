"""Checks that the converted ONNX tower computes what the PyTorch tower computed in training.

Runs our TS runtime on real PNGs (decode + preprocess + ONNX: `llm2clip preprocess` and `llm2clip features`)
and compares with the PyTorch tower on the same files decoded by PIL:
  - pixels: `llm2clip preprocess` output vs train_tower.normalize (must be bit-identical),
  - patch_features vs the PyTorch tap (block L-2 output, patch tokens): max relative error <= 1e-4.

  python3 verify_tower.py --hf HF_DIR --onnx TOWER_DIR --images DIR [--count N] [--cli "node dist/src/cli/main.js"]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_tower import load_hf, normalize  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--cli", default="node dist/src/cli/main.js")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    files = sorted(f for f in os.listdir(a.images) if f.startswith("heldout-") and f.endswith(".png"))[: a.count]
    paths = [os.path.join(a.images, f) for f in files]
    u8 = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]))
    x = normalize(u8)
    tower = load_hf(a.hf)
    with torch.no_grad():
        tap, emb = tower(x)
    cli = shlex.split(a.cli)
    with tempfile.TemporaryDirectory() as tmp:
        pix = os.path.join(tmp, "p.npy")
        subprocess.run(cli + ["preprocess", "--tower", a.onnx, paths[0], "--out", pix], check=True, capture_output=True)
        ts_pix = np.load(pix).reshape(3, x.shape[2], x.shape[3])
        feats = os.path.join(tmp, "f.npy")
        subprocess.run(cli + ["features", "--tower", a.onnx, *paths, "--out", feats], check=True, capture_output=True)
        onnx = torch.from_numpy(np.load(feats))
    pix_diff = float(np.abs(ts_pix - x[0].numpy()).max())
    rel = float(((onnx - tap).abs().max() / tap.abs().max()).item())
    res = {"images": len(paths), "pixels_max_abs_diff": pix_diff, "patch_features_max_rel_diff": rel,
           "patch_features_max_abs": float(tap.abs().max()), "ok": pix_diff == 0.0 and rel <= 1e-4}
    print(json.dumps(res))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()
