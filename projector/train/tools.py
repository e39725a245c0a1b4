"""Helpers around the trainer: python3 -m projector.train.tools COMMAND ...

  init-llm   a random-weight Llama-family HF checkpoint (config.json + model.safetensors) via save_hf_llama
  logits     llama.py logits [T, V] for token ids (float32 .npy) — the training-side LLM forward pass
  project    a projector dir applied to features [N, W] or [n, N, W] (.npy) → [.., D] (.npy)
  row-logits logits [T, V] for one shard row with the projected image spliced in, exactly as training does
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from . import fastops
from .llama import LlamaConfig, LlamaForCausalLM, load_hf_llama, save_hf_llama
from .projector_model import load_projector


def cmd_init_llm(a) -> None:
    cfg = LlamaConfig(
        vocab_size=a.vocab_size, hidden_size=a.hidden, intermediate_size=a.ffn, num_hidden_layers=a.layers,
        num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, head_dim=a.head_dim, rms_norm_eps=a.rms_eps,
        rope_theta=a.rope_theta, max_position_embeddings=a.max_pos, tie_word_embeddings=a.tied, architecture=a.arch,
        bos_token_id=a.bos, eos_token_id=a.eos,
    )
    model = LlamaForCausalLM(cfg).init_weights(seed=a.seed, std=a.std, embed_std=a.embed_std, fan_in=a.fan_in)
    if a.qkv_bias_std:
        g = torch.Generator().manual_seed(a.seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("_proj.bias"):
                    p.copy_(torch.randn(p.shape, generator=g) * a.qkv_bias_std)
    save_hf_llama(model, cfg, a.out, dtype=a.dtype, tokenizer_from=a.tokenizer_from)
    print(json.dumps({"out": a.out, "params": sum(p.numel() for p in model.parameters())}))


@torch.no_grad()
def cmd_logits(a) -> None:
    model = load_hf_llama(a.llm)
    ids = torch.tensor([[int(x) for x in a.ids.split(",")]], dtype=torch.int64)
    np.save(a.out, model(ids)[0].float().numpy())


@torch.no_grad()
def cmd_project(a) -> None:
    proj, _ = load_projector(a.projector)
    x = torch.from_numpy(np.load(a.features).astype(np.float32))
    np.save(a.out, proj(x).numpy())


@torch.no_grad()
def cmd_row_logits(a) -> None:
    from .data import ShardDataset
    from .trainer import splice

    data = ShardDataset(a.shards)
    model = load_hf_llama(a.llm)
    proj, _ = load_projector(a.projector)
    b = data.batch([a.row])
    x = splice(model.embed(b.input_ids), proj(b.features), b.image_at)
    np.save(a.out, model(inputs_embeds=x)[0].float().numpy())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m projector.train.tools")
    p.add_argument("--no-fast-cpu", action="store_true", help="plain torch ops instead of the oneDNN kernels")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("init-llm")
    s.add_argument("--out", required=True)
    s.add_argument("--vocab-size", type=int, required=True)
    s.add_argument("--hidden", type=int, default=64)
    s.add_argument("--ffn", type=int, default=128)
    s.add_argument("--layers", type=int, default=2)
    s.add_argument("--heads", type=int, default=4)
    s.add_argument("--kv-heads", type=int, default=None)
    s.add_argument("--head-dim", type=int, default=None)
    s.add_argument("--rms-eps", type=float, default=1e-6)
    s.add_argument("--rope-theta", type=float, default=10000.0)
    s.add_argument("--max-pos", type=int, default=2048)
    s.add_argument("--tied", action="store_true")
    s.add_argument("--arch", default="LlamaForCausalLM")
    s.add_argument("--bos", type=int, default=None)
    s.add_argument("--eos", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--std", type=float, default=0.02, help="std of matrices (and embeddings unless --embed-std)")
    s.add_argument("--embed-std", type=float, default=None)
    s.add_argument("--fan-in", action="store_true", help="matrices get std 1/sqrt(fan_in) instead of --std")
    s.add_argument("--qkv-bias-std", type=float, default=0.0, help="random (instead of zero) biases, for parity tests")
    s.add_argument("--dtype", default="F32", choices=("F32", "F16", "BF16"))
    s.add_argument("--tokenizer-from", default=None)
    s = sub.add_parser("logits")
    s.add_argument("--llm", required=True)
    s.add_argument("--ids", required=True, help="comma-separated token ids")
    s.add_argument("--out", required=True)
    s = sub.add_parser("project")
    s.add_argument("--projector", required=True)
    s.add_argument("--features", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("row-logits")
    s.add_argument("--shards", required=True)
    s.add_argument("--llm", required=True)
    s.add_argument("--projector", required=True)
    s.add_argument("--row", type=int, default=0)
    s.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.no_fast_cpu:
        fastops.set_enabled(False)
    {"init-llm": cmd_init_llm, "logits": cmd_logits, "project": cmd_project, "row-logits": cmd_row_logits}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
