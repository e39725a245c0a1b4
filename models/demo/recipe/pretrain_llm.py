"""Stage (b): pretrain the demo LLM (tiny Llama, our tokenizer) on the world's text.

Every training sequence is a served chat, token for token: the rows come from `run.js tokens`, which
renders each question with the GGUF's own chat template through the serving code (renderPrompt +
planPrompt), and the answer is followed by the end-of-turn token. The image's rows (one per grid cell,
row-major, like the tower's patches) hold a *scene text*: for each cell, a learned embedding of what the
cell holds (empty, or colour x shape) plus a learned embedding of the cell. It is the world written in
the LLM's own input space — an oracle "perfect projector" — so the LLM learns the language of the world
and how to answer from a scene; stage (c) then trains the real projector to write that scene from tower
features. The slot tables are not part of the LLM and are not shipped. Noise on the slots keeps the LLM
tolerant of an imperfect projector.

  python3 pretrain_llm.py init --tokenizer DIR --out HF_DIR            random init + tokenizer (for tokenizing)
  python3 pretrain_llm.py train --init HF_DIR --data QA_DIR --tokens FILE.jsonl --heldout-tokens FILE.jsonl --out DIR
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
from projector.train.llama import LlamaConfig, LlamaForCausalLM, load_hf_llama, save_hf_llama  # noqa: E402
from projector.train.st import write_safetensors  # noqa: E402

# 6 layers: at 4 layers the lookups (find "the circle", then read its colour) stalled near 56% with oracle scenes.
LLM_GEOMETRY = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=4)
if os.environ.get("DEMO_LLM_LAYERS"):
    LLM_GEOMETRY["num_hidden_layers"] = int(os.environ["DEMO_LLM_LAYERS"])


def cmd_init(a):
    with open(os.path.join(a.tokenizer, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    n = len(tj["model"]["vocab"]) + sum(1 for t in tj["added_tokens"] if t["content"] not in tj["model"]["vocab"])
    ids = {t["content"]: t["id"] for t in tj["added_tokens"]}
    cfg = LlamaConfig(vocab_size=n, rms_norm_eps=1e-5, max_position_embeddings=512, tie_word_embeddings=True,
                      bos_token_id=ids["<s>"], eos_token_id=ids["<|im_end|>"], **LLM_GEOMETRY)
    model = LlamaForCausalLM(cfg).init_weights(seed=a.seed)
    save_hf_llama(model, cfg, a.out, dtype="F32", tokenizer_from=a.tokenizer)
    print(json.dumps({"vocab_size": n, "params": sum(p.numel() for p in model.parameters())}))


class Scenes:
    """Cell classes of every image: 0 empty, else 1 + colour * n_shapes + shape."""

    def __init__(self, qa_dir):
        with open(os.path.join(qa_dir, "world.json")) as f:
            self.world = json.load(f)
        with open(os.path.join(qa_dir, "scenes.json")) as f:
            scenes = json.load(f)
        cols, shps = self.world["colours"], self.world["shapes"]
        self.cells = self.world["grid"] ** 2
        self.classes = 1 + len(cols) * len(shps)
        self.labels = {}
        for name, sc in scenes.items():
            lab = [0] * self.cells
            for o in sc["objects"]:
                lab[o["cell"]] = 1 + cols.index(o["colour"]) * len(shps) + shps.index(o["shape"])
            self.labels[name] = lab


def read_rows(path, scenes):
    rows = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            r["cells"] = scenes.labels[r["image"]]
            rows.append(r)
    return rows


class SceneSlots(nn.Module):
    """One slot per cell: (empty | object + colour + shape) + row + column, each a learned vector. The
    factored form lets the LLM read colour, shape and place separately (and compose 'top' + 'left')."""

    def __init__(self, n_colours, n_shapes, grid, hidden, std=0.02):
        super().__init__()
        self.n_shapes, self.grid = n_shapes, grid
        self.empty = nn.Parameter(torch.randn(hidden) * std)
        self.object = nn.Parameter(torch.randn(hidden) * std)
        self.colour = nn.Parameter(torch.randn(n_colours, hidden) * std)
        self.shape = nn.Parameter(torch.randn(n_shapes, hidden) * std)
        self.row = nn.Parameter(torch.randn(grid, hidden) * std)
        self.col = nn.Parameter(torch.randn(grid, hidden) * std)

    def forward(self, labels):
        """labels [B, cells] (0 empty, else 1 + colour * n_shapes + shape) -> [B, cells, H]"""
        present = (labels > 0).unsqueeze(-1)
        k = (labels - 1).clamp(min=0)
        obj = self.object + self.colour[k // self.n_shapes] + self.shape[k % self.n_shapes]
        content = torch.where(present, obj, self.empty.expand_as(obj))
        cells = torch.arange(labels.shape[1])
        place = self.row[cells // self.grid] + self.col[cells % self.grid]
        return content + place.unsqueeze(0)


def embed_batch(model, slots, rows, with_answer, noise=0.0, gen=None):
    """Input embeddings [B, T, H] (right-padded) with the scene slots in the image span; T, lengths."""
    seqs = [r["tokens"] + (r["answer"][:-1] if with_answer else []) for r in rows]
    T = max(len(s) for s in seqs)
    pad = rows[0]["tokens"][rows[0]["image_start"]]
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
    x = model.embed(ids)
    lab = torch.tensor([r["cells"] for r in rows])
    sl = slots(lab)
    if noise > 0:
        rms = sl.pow(2).mean(-1, keepdim=True).sqrt().detach()
        sl = sl + noise * rms * torch.randn(sl.shape, generator=gen)
    x = x.clone()
    for b, r in enumerate(rows):
        s, n = r["image_start"], r["image_len"]
        x[b, s: s + n] = sl[b]
    return x, [len(s) for s in seqs]


def batch_loss(model, slots, rows, noise, gen):
    x, _ = embed_batch(model, slots, rows, True, noise, gen)
    h = model.hidden_states(inputs_embeds=x)
    bs, ps, ys = [], [], []
    for b, r in enumerate(rows):
        p0 = len(r["tokens"]) - 1
        for k, t in enumerate(r["answer"]):
            bs.append(b)
            ps.append(p0 + k)
            ys.append(t)
    logits = model.logits(h[torch.tensor(bs), torch.tensor(ps)])
    return F.cross_entropy(logits, torch.tensor(ys))


class Detok:
    def __init__(self, tok_dir):
        with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        self.pieces = {i: t for t, i in tj["model"]["vocab"].items()}
        for t in tj["added_tokens"]:
            self.pieces[t["id"]] = t["content"]

    def __call__(self, ids):
        out = []
        for i in ids:
            p = self.pieces.get(i, "")
            if p.startswith("<0x") and p.endswith(">") and len(p) == 6:
                out.append(chr(int(p[3:5], 16)))
            elif p.startswith("<") and p.endswith(">"):
                continue
            else:
                out.append(p.replace("\u2581", " "))
        return "".join(out)


def normalize_answer(s):
    s = s.strip().lower()
    while s and s[-1] in ".!":
        s = s[:-1]
    return s.strip()


@torch.no_grad()
def greedy(model, x, eos, max_tokens=8):
    """x [1, T, H] prompt embeddings -> generated ids (stops at eos, which is not included)."""
    out = []
    for _ in range(max_tokens):
        t = model.logits(model.hidden_states(inputs_embeds=x)[:, -1]).argmax(-1).item()
        if t == eos:
            break
        out.append(t)
        x = torch.cat([x, model.embed(torch.tensor([[t]]))], dim=1)
    return out


@torch.no_grad()
def evaluate(model, slots, rows, eos, detok, answers, limit=None):
    model.eval()
    rows = rows[:limit] if limit else rows
    correct, by_type = 0, {}
    for r in rows:
        x, _ = embed_batch(model, slots, [r], False)
        got = normalize_answer(detok(greedy(model, x, eos)))
        q = answers[r["id"]]
        ok = got == normalize_answer(q["answer"])
        correct += ok
        t = by_type.setdefault(q["type"], [0, 0])
        t[0] += ok
        t[1] += 1
    model.train()
    return correct / max(1, len(rows)), {k: round(v[0] / v[1], 4) for k, v in sorted(by_type.items())}


def cmd_train(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    scenes = Scenes(a.data)
    rows = read_rows(a.tokens, scenes)
    held = read_rows(a.heldout_tokens, scenes)
    with open(os.path.join(a.data, "heldout-questions.json")) as f:
        answers = {q["id"]: q for q in json.load(f)}
    model = load_hf_llama(a.init).train()
    cfg = model.config
    eos = cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else cfg.eos_token_id[0]
    slots = SceneSlots(len(scenes.world['colours']), len(scenes.world['shapes']), scenes.world['grid'], cfg.hidden_size)
    detok = Detok(a.init)
    params = list(model.parameters()) + list(slots.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.98))
    os.makedirs(a.out, exist_ok=True)
    ckpt = os.path.join(a.out, "train-state.pt")
    step = 0
    if a.warm_start:
        # a further training cycle from another run's final state (model + scene slots; fresh optimizer)
        st = torch.load(a.warm_start)
        model.load_state_dict(st["model"])
        slots.load_state_dict(st["slots"])
        print(f"warm start from {a.warm_start} (its step {st['step']})", flush=True)
    if a.resume and os.path.exists(ckpt):
        st = torch.load(ckpt)
        model.load_state_dict(st["model"])
        slots.load_state_dict(st["slots"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        print(f"resumed at step {step}", flush=True)
    warm = max(1, a.steps // 30)
    t0 = time.time()
    log = []
    # Curriculum: few objects first (a lookup among few distractors is found quickly), then the whole world.
    n_obj = torch.tensor([sum(1 for c in r["cells"] if c) for r in rows])
    pools = {k: torch.nonzero(n_obj <= k).flatten() for k in range(1, int(n_obj.max()) + 1)}
    stages = [(float(f), int(k)) for f, k in (x.split(":") for x in a.curriculum.split(","))] if a.curriculum else []

    def pool_at(step):
        k = int(n_obj.max())
        for frac, kk in stages:
            if step < frac * a.steps:
                k = kk
                break
        return pools[k]
    while step < a.steps:
        g = torch.Generator().manual_seed(a.seed * 100003 + step)
        lr = a.lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / a.steps))))
        for pg in opt.param_groups:
            pg["lr"] = lr
        pool = pool_at(step)
        idx = pool[torch.randint(0, len(pool), (a.batch,), generator=g)].tolist()
        loss = batch_loss(model, slots, [rows[i] for i in idx], a.noise, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step}/{a.steps} lr {lr:.2e} loss {loss.item():.4f} | {time.time() - t0:.0f}s", flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            acc, by = evaluate(model, slots, held, eos, detok, answers, limit=a.eval_limit if step < a.steps else None)
            log.append({"step": step, "heldout_accuracy": acc, "by_type": by})
            print(f"  eval step {step}: held-out accuracy {acc:.4f} {by}", flush=True)
            torch.save({"model": model.state_dict(), "slots": slots.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
    save_hf_llama(model, cfg, os.path.join(a.out, "hf"), dtype="F32", tokenizer_from=a.init)
    write_safetensors(os.path.join(a.out, "scene-slots.safetensors"), {k: v.detach().contiguous() for k, v in slots.state_dict().items()})
    result = {"heldout_accuracy_oracle_scene": log[-1]["heldout_accuracy"], "by_type": log[-1]["by_type"], "steps": a.steps, "seconds": time.time() - t0, "log": log}
    with open(os.path.join(a.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "log"}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init")
    i.add_argument("--tokenizer", required=True)
    i.add_argument("--out", required=True)
    i.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train")
    t.add_argument("--init", required=True)
    t.add_argument("--data", required=True)
    t.add_argument("--tokens", required=True)
    t.add_argument("--heldout-tokens", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=5000)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--noise", type=float, default=0.3)
    t.add_argument("--curriculum", default="0.1:1,0.25:2,0.45:3", help="FRAC:MAXOBJ,...: before FRAC of the steps, only scenes with <= MAXOBJ objects")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--eval-every", type=int, default=1000)
    t.add_argument("--eval-limit", type=int, default=150)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--warm-start", default=None, help="train-state.pt of a previous run to start from (model and slots)")
    a = ap.parse_args()
    cmd_init(a) if a.cmd == "init" else cmd_train(a)


if __name__ == "__main__":
    main()
