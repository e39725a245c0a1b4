"""Held-out accuracy of the demo model in PyTorch: PNG (PIL) -> PyTorch tower tap -> projector -> PyTorch
Llama, greedy, stopping at the end-of-turn token; exact match after trimming and lowercasing. The prompt
token ids are the served ones (`run.js tokens`), so this is the same model and the same prompts as the
runtime evaluation (`run.js eval`), computed by independent code.

  python3 eval_torch.py --tower HF_DIR --projector DIR --llm HF_DIR --tokens FILE.jsonl --questions FILE.json --images DIR [--out FILE]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..", "..")))
from projector.train.llama import load_hf_llama  # noqa: E402
from projector.train.projector_model import load_projector  # noqa: E402
from pretrain_llm import Detok, greedy, normalize_answer  # noqa: E402
from train_tower import load_hf, normalize  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tower", required=True)
    ap.add_argument("--projector", required=True)
    ap.add_argument("--llm", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    tower = load_hf(a.tower)
    proj, _ = load_projector(a.projector)
    proj.eval()
    llm = load_hf_llama(a.llm).eval()
    eos = llm.config.eos_token_id if isinstance(llm.config.eos_token_id, int) else llm.config.eos_token_id[0]
    detok = Detok(a.llm)
    with open(a.questions) as f:
        qs = {q["id"]: q for q in json.load(f)}
    rows = [json.loads(l) for l in open(a.tokens)]
    cache = {}
    correct, by_type, by_obj, mistakes = 0, {}, {}, []
    with torch.no_grad():
        for r in rows:
            q = qs[r["id"]]
            if r["image"] not in cache:
                u8 = torch.from_numpy(np.array(Image.open(os.path.join(a.images, r["image"])).convert("RGB")))[None]
                tap, _ = tower(normalize(u8))
                cache[r["image"]] = proj(tap)[0]
            ids = torch.tensor([r["tokens"]])
            x = llm.embed(ids).clone()
            s, n = r["image_start"], r["image_len"]
            x[0, s: s + n] = cache[r["image"]]
            got = detok(greedy(llm, x, eos))
            ok = normalize_answer(got) == normalize_answer(q["answer"])
            correct += ok
            for d, k in ((by_type, q["type"]), (by_obj, str(q["objects"]))):
                t = d.setdefault(k, [0, 0])
                t[0] += ok
                t[1] += 1
            if not ok:
                mistakes.append({"id": q["id"], "question": q["question"], "expected": q["answer"], "got": got})
    res = {"questions": len(rows), "correct": correct, "accuracy": correct / len(rows),
           "byType": {k: {"questions": v[1], "correct": v[0], "accuracy": v[0] / v[1]} for k, v in sorted(by_type.items())},
           "byObjects": {k: {"questions": v[1], "correct": v[0], "accuracy": v[0] / v[1]} for k, v in sorted(by_obj.items())},
           "seconds": time.time() - t0, "mistakes": mistakes[:40]}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)
    print(json.dumps({k: v for k, v in res.items() if k != "mistakes"}))
    for m in mistakes[:10]:
        print("  miss:", m)


if __name__ == "__main__":
    main()
