"""Stage (a): pretrain the demo vision tower on its own and save it as an LLM2CLIP (OpenAI-arch) Hugging Face
checkpoint: config.json + model.safetensors with HF CLIP names (vision_model.*, visual_projection.weight).

The tower is a tiny CLIP ViT (48 px images, 16 px patches: one patch per grid cell of the demo world,
quick_gelu, pre-LN, CLS token). It learns from auxiliary heads that are thrown away afterwards:
  - on the tap (output of block L-2, patch tokens, no norm: what the projector reads) each patch token
    predicts what its cell holds (empty, or colour x shape: 37 classes) and which cell it is (9 classes);
  - on image_embeds (post_layernorm(CLS) @ visual_projection) the image predicts which colours and shapes
    occur (multi-label) and how many objects there are.
Inputs are exactly the pixels `llm2clip preprocess` produces for these images: the PNGs are already
48x48 RGB, so the eval transform is the identity resize + ((x/255) - mean) / std in float32.

  python3 train_tower.py --data DIR(tower-set) --out DIR [--steps N] [--batch B] [--seed S] [--resume]
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
from projector.train import fastops  # noqa: E402
from projector.train.st import write_safetensors, read_safetensors  # noqa: E402

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
GEOMETRY = dict(image_size=48, patch_size=16, width=128, layers=4, heads=4, mlp=512, embed_dim=64)


def normalize(u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> float32 [N, 3, S, S], rounded per step in float32 as torch/our TS do."""
    x = u8.permute(0, 3, 1, 2).to(torch.float32).div(255.0)
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return x.sub(mean).div(std)


class Block(nn.Module):
    def __init__(self, w, heads, mlp):
        super().__init__()
        self.heads = heads
        self.layer_norm1 = nn.LayerNorm(w, eps=1e-5)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (fastops.Linear(w, w) for _ in range(4))
        self.layer_norm2 = nn.LayerNorm(w, eps=1e-5)
        self.fc1 = fastops.Linear(w, mlp)
        self.fc2 = fastops.Linear(mlp, w)

    def forward(self, x):
        B, T, W = x.shape
        H, D = self.heads, W // self.heads
        h = self.layer_norm1(x)
        q = self.q_proj(h).view(B, T, H, D).transpose(1, 2) * D ** -0.5
        k = self.k_proj(h).view(B, T, H, D).transpose(1, 2)
        v = self.v_proj(h).view(B, T, H, D).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        x = x + self.out_proj(a.transpose(1, 2).reshape(B, T, W))
        h = self.fc1(self.layer_norm2(x))
        h = h * torch.sigmoid(1.702 * h)  # quick_gelu
        return x + self.fc2(h)


class Tower(nn.Module):
    def __init__(self, g=GEOMETRY):
        super().__init__()
        self.g = g
        W, P, S = g["width"], g["patch_size"], g["image_size"]
        self.grid = S // P
        self.class_embedding = nn.Parameter(torch.randn(W) * 0.02)
        self.patch_embedding = nn.Parameter(torch.randn(W, 3, P, P) * (3 * P * P) ** -0.5)
        self.position_embedding = nn.Parameter(torch.randn(self.grid ** 2 + 1, W) * 0.02)
        self.pre_layrnorm = nn.LayerNorm(W, eps=1e-5)
        self.layers = nn.ModuleList([Block(W, g["heads"], g["mlp"]) for _ in range(g["layers"])])
        self.post_layernorm = nn.LayerNorm(W, eps=1e-5)
        self.visual_projection = nn.Parameter(torch.randn(g["embed_dim"], W) * W ** -0.5)

    def forward(self, pixels):
        """pixels [B, 3, S, S] -> (tap [B, G^2, W] = block L-2 output, patch tokens; image_embeds [B, E])."""
        B = pixels.shape[0]
        P, G, W = self.g["patch_size"], self.grid, self.g["width"]
        patches = pixels.reshape(B, 3, G, P, G, P).permute(0, 2, 4, 1, 3, 5).reshape(B, G * G, 3 * P * P)
        x = fastops.linear(patches, self.patch_embedding.reshape(W, -1))
        x = torch.cat([self.class_embedding.expand(B, 1, W), x], dim=1) + self.position_embedding
        x = self.pre_layrnorm(x)
        tap = None
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == len(self.layers) - 2:
                tap = x[:, 1:]
        pooled = self.post_layernorm(x[:, 0])
        return tap, fastops.linear(pooled, self.visual_projection)

    def hf_state_dict(self):
        v = "vision_model."
        sd = {
            f"{v}embeddings.class_embedding": self.class_embedding,
            f"{v}embeddings.patch_embedding.weight": self.patch_embedding,
            f"{v}embeddings.position_embedding.weight": self.position_embedding,
            f"{v}pre_layrnorm.weight": self.pre_layrnorm.weight, f"{v}pre_layrnorm.bias": self.pre_layrnorm.bias,
            f"{v}post_layernorm.weight": self.post_layernorm.weight, f"{v}post_layernorm.bias": self.post_layernorm.bias,
            "visual_projection.weight": self.visual_projection,
        }
        for i, l in enumerate(self.layers):
            p = f"{v}encoder.layers.{i}."
            for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
                sd[f"{p}self_attn.{n}.weight"] = getattr(l, n).weight
                sd[f"{p}self_attn.{n}.bias"] = getattr(l, n).bias
            for n in ("layer_norm1", "layer_norm2"):
                sd[f"{p}{n}.weight"] = getattr(l, n).weight
                sd[f"{p}{n}.bias"] = getattr(l, n).bias
            for n in ("fc1", "fc2"):
                sd[f"{p}mlp.{n}.weight"] = getattr(l, n).weight
                sd[f"{p}mlp.{n}.bias"] = getattr(l, n).bias
        return {k: t.detach().to(torch.float32).contiguous() for k, t in sd.items()}

    def load_hf_state_dict(self, sd):
        own = self.hf_state_dict()
        missing = set(own) - set(sd)
        if missing:
            raise ValueError(f"missing tensors: {sorted(missing)[:3]}")
        with torch.no_grad():
            params = dict(self.named_parameters())
            alias = {}
            v = "vision_model."
            alias[f"{v}embeddings.class_embedding"] = "class_embedding"
            alias[f"{v}embeddings.patch_embedding.weight"] = "patch_embedding"
            alias[f"{v}embeddings.position_embedding.weight"] = "position_embedding"
            alias["visual_projection.weight"] = "visual_projection"
            for n in ("pre_layrnorm", "post_layernorm"):
                alias[f"{v}{n}.weight"] = f"{n}.weight"
                alias[f"{v}{n}.bias"] = f"{n}.bias"
            for i in range(len(self.layers)):
                p = f"{v}encoder.layers.{i}."
                for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    for t in ("weight", "bias"):
                        alias[f"{p}self_attn.{n}.{t}"] = f"layers.{i}.{n}.{t}"
                for n in ("layer_norm1", "layer_norm2"):
                    for t in ("weight", "bias"):
                        alias[f"{p}{n}.{t}"] = f"layers.{i}.{n}.{t}"
                for n in ("fc1", "fc2"):
                    for t in ("weight", "bias"):
                        alias[f"{p}mlp.{n}.{t}"] = f"layers.{i}.{n}.{t}"
            for k, name in alias.items():
                params[name].copy_(sd[k].to(torch.float32))


def save_hf(tower: Tower, out: str):
    g = tower.g
    os.makedirs(out, exist_ok=True)
    sd = tower.hf_state_dict()
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07), dtype=torch.float32)
    write_safetensors(os.path.join(out, "model.safetensors"), sd, {"format": "pt"})
    cfg = {
        "architectures": ["LLM2CLIPModel"],
        "model_type": "clip",
        "projection_dim": g["embed_dim"],
        "vision_config": {
            "hidden_size": g["width"], "intermediate_size": g["mlp"], "num_attention_heads": g["heads"],
            "num_hidden_layers": g["layers"], "patch_size": g["patch_size"], "image_size": g["image_size"],
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": g["embed_dim"], "num_channels": 3,
        },
        "_name_or_path": "llm2clip-demo-tower",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def load_hf(dir: str) -> Tower:
    with open(os.path.join(dir, "config.json")) as f:
        vc = json.load(f)["vision_config"]
    g = dict(image_size=vc["image_size"], patch_size=vc["patch_size"], width=vc["hidden_size"], layers=vc["num_hidden_layers"],
             heads=vc["num_attention_heads"], mlp=vc["intermediate_size"], embed_dim=vc["projection_dim"])
    t = Tower(g)
    t.load_hf_state_dict(read_safetensors(os.path.join(dir, "model.safetensors")))
    return t.eval()


class Heads(nn.Module):
    def __init__(self, g, n_colours, n_shapes, max_objects, n_cells):
        super().__init__()
        W, E = g["width"], g["embed_dim"]
        self.cell_norm = nn.LayerNorm(W)
        self.cell = nn.Linear(W, 1 + n_colours * n_shapes)
        self.pos = nn.Linear(W, n_cells)
        self.presence = nn.Linear(E, n_colours + n_shapes)
        self.count = nn.Linear(E, max_objects + 1)


def targets(labels: torch.Tensor, n_colours: int, n_shapes: int):
    """labels [B, 9] (0 empty, else 1 + colour * n_shapes + shape) -> presence multi-hot [B, C+S], count [B]."""
    B = labels.shape[0]
    present = labels > 0
    colour = torch.where(present, (labels - 1) // n_shapes, torch.full_like(labels, -1))
    shape = torch.where(present, (labels - 1) % n_shapes, torch.full_like(labels, -1))
    pres = torch.zeros(B, n_colours + n_shapes)
    for c in range(n_colours):
        pres[:, c] = (colour == c).any(1).float()
    for s in range(n_shapes):
        pres[:, n_colours + s] = (shape == s).any(1).float()
    return pres, present.sum(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with open(os.path.join(a.data, "meta.json")) as f:
        meta = json.load(f)
    n, S = meta["count"], meta["imageSize"]
    nc, ns = len(meta["colours"]), len(meta["shapes"])
    pixels = torch.from_numpy(np.fromfile(os.path.join(a.data, "pixels.u8"), dtype=np.uint8).reshape(n, S, S, 3))
    labels = torch.from_numpy(np.fromfile(os.path.join(a.data, "labels.u8"), dtype=np.uint8).reshape(n, -1).astype(np.int64))
    n_val = min(2000, n // 10)
    val_x, val_y = normalize(pixels[:n_val]), labels[:n_val]
    tr_px, tr_y = pixels[n_val:], labels[n_val:]
    tower = Tower()
    heads = Heads(tower.g, nc, ns, 9, labels.shape[1])
    params = list(tower.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.05, betas=(0.9, 0.98))
    os.makedirs(a.out, exist_ok=True)
    ckpt = os.path.join(a.out, "train-state.pt")
    step = 0
    if a.resume and os.path.exists(ckpt):
        st = torch.load(ckpt)
        tower.load_state_dict(st["tower"])
        heads.load_state_dict(st["heads"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        torch.set_rng_state(st["rng"])
        print(f"resumed at step {step}", flush=True)
    cells = torch.arange(labels.shape[1])
    warm = max(1, a.steps // 30)

    def losses(x, y):
        tap, emb = tower(x)
        h = heads.cell_norm(tap)
        l_cell = F.cross_entropy(heads.cell(h).reshape(-1, heads.cell.out_features), y.reshape(-1))
        l_pos = F.cross_entropy(heads.pos(h).reshape(-1, heads.pos.out_features), cells.repeat(x.shape[0]))
        pres, cnt = targets(y, nc, ns)
        l_pres = F.binary_cross_entropy_with_logits(heads.presence(emb), pres)
        l_cnt = F.cross_entropy(heads.count(emb), cnt)
        return l_cell, l_pos, l_pres, l_cnt, heads.cell(h).argmax(-1)

    t0 = time.time()
    g = torch.Generator().manual_seed(a.seed * 7919 + step)
    while step < a.steps:
        lr = a.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / a.steps)))
        for pg in opt.param_groups:
            pg["lr"] = lr
        idx = torch.randint(0, tr_px.shape[0], (a.batch,), generator=g)
        x = normalize(tr_px[idx])
        # flips keep cells aligned with patches; the labels move with them
        y = tr_y[idx].view(-1, 3, 3)
        if torch.rand(1, generator=g).item() < 0.5:
            x, y = x.flip(3), y.flip(2)
        y = y.reshape(a.batch, -1)
        l_cell, l_pos, l_pres, l_cnt, _ = losses(x, y)
        loss = l_cell + 0.2 * l_pos + 0.5 * l_pres + 0.3 * l_cnt
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 100 == 0 or step == a.steps:
            with torch.no_grad():
                tower.eval()
                vc, vp, vpr, vcn, pred = losses(val_x, val_y)
                tower.train()
            acc = (pred == val_y).float().mean().item()
            img_acc = (pred == val_y).all(1).float().mean().item()
            print(f"step {step}/{a.steps} lr {lr:.2e} loss {loss.item():.4f} | val cell CE {vc.item():.4f} cell acc {acc:.4f} "
                  f"image-all-cells acc {img_acc:.4f} pos CE {vp.item():.4f} presence {vpr.item():.4f} count {vcn.item():.4f} "
                  f"| {time.time() - t0:.0f}s", flush=True)
        if step % 500 == 0 or step == a.steps:
            torch.save({"tower": tower.state_dict(), "heads": heads.state_dict(), "opt": opt.state_dict(), "step": step, "rng": torch.get_rng_state()}, ckpt)
    tower.eval()
    with torch.no_grad():
        _, _, _, _, pred = losses(val_x, val_y)
    result = {"cell_accuracy": (pred == val_y).float().mean().item(), "image_accuracy": (pred == val_y).all(1).float().mean().item(),
              "steps": a.steps, "seconds": time.time() - t0}
    save_hf(tower, os.path.join(a.out, "hf"))
    with open(os.path.join(a.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
