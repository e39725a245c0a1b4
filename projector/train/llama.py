"""A small, dependency-free PyTorch Llama-family decoder that loads and saves Hugging Face checkpoints.

Same maths as transformers' LlamaForCausalLM / MistralForCausalLM (no sliding window) / Qwen2ForCausalLM
(no sliding window) and as llama.cpp's "llama" graph that our TS `convert-llm` targets: RMSNorm,
rotate-half RoPE on HF-layout q/k (rope_theta; default, linear and llama3 scaling), grouped-query
attention, SwiGLU MLP, optional tied embeddings, optional biases (Qwen2's q/k/v; Llama's
attention_bias / mlp_bias). Parameter names are the HF names, so `model.state_dict()` *is* an HF
checkpoint (minus lm_head when tied).

Stable API:
    LlamaConfig(vocab_size=…, hidden_size=…, intermediate_size=…, num_hidden_layers=…,
                num_attention_heads=…, num_key_value_heads=None, head_dim=None, …)
    LlamaConfig.from_hf(dict) / config.to_hf() -> dict (config.json contents)
    LlamaForCausalLM(config)          .config, .model.embed_tokens, .model.layers, .model.norm, .lm_head
        forward(input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None) -> logits [B, T, V]
        hidden_states(input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None) -> [B, T, H]
        logits(hidden) -> [..., V]                 (lm_head or tied embeddings)
        embed(input_ids) -> [B, T, H]
        init_weights(seed=0, std=0.02, embed_std=None, fan_in=False)
    load_hf_llama(dir, dtype=torch.float32, device="cpu") -> LlamaForCausalLM   (config as model.config)
    save_hf_llama(model, config, dir, dtype=None, tokenizer_from=None, metadata=None) -> None
        writes config.json + model.safetensors (HF names; lm_head omitted when tied); dtype "F32"|"F16"|"BF16"
        or a torch dtype (default: the model's); tokenizer_from copies tokenizer files from another HF dir.

attention_mask ([B, T], 1 = real token) is only needed for left padding: with right padding the causal
mask already keeps real tokens from seeing the padding after them.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint

from . import fastops
from .st import read_header, read_safetensors, write_safetensors

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
MODEL_TYPE = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "generation_config.json", "chat_template.jinja", "vocab.json", "merges.txt", "added_tokens.json")


class LlamaError(ValueError):
    pass


@dataclass
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: Optional[int] = None
    head_dim: Optional[int] = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: Optional[Dict[str, Any]] = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    architecture: str = "LlamaForCausalLM"
    attention_bias: bool = False  # Llama: bias on q, k, v and o
    qkv_bias: bool = False  # Qwen2: bias on q, k, v only
    mlp_bias: bool = False
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[Union[int, list]] = None
    extra: Dict[str, Any] = field(default_factory=dict)  # other config.json keys, written back unchanged

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise LlamaError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}")
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise LlamaError(f"num_attention_heads {self.num_attention_heads} is not a multiple of num_key_value_heads {self.num_key_value_heads}")
        if self.head_dim % 2:
            raise LlamaError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.architecture not in ARCHITECTURES:
            raise LlamaError(f"architecture {self.architecture} is not supported ({', '.join(ARCHITECTURES)})")
        if self.architecture == "Qwen2ForCausalLM":
            self.qkv_bias = True

    @staticmethod
    def from_hf(d: Dict[str, Any]) -> "LlamaConfig":
        archs = d.get("architectures") or ["LlamaForCausalLM"]
        arch = next((a for a in archs if a in ARCHITECTURES), None)
        if arch is None:
            raise LlamaError(f"architecture {', '.join(archs)} is not supported ({', '.join(ARCHITECTURES)})")
        if d.get("hidden_act", "silu") != "silu":
            raise LlamaError(f"hidden_act {d['hidden_act']} is not supported (SiLU-gated FFN only)")
        if d.get("quantization_config") is not None:
            raise LlamaError("quantized checkpoints are not supported")
        ctx = d.get("max_position_embeddings", 2048)
        if arch == "MistralForCausalLM" and d.get("sliding_window") is not None and d["sliding_window"] < ctx:
            raise LlamaError("sliding-window attention is not supported")
        if arch == "Qwen2ForCausalLM" and d.get("use_sliding_window"):
            raise LlamaError("sliding-window attention is not supported")
        rp = d.get("rope_parameters") or d.get("rope_scaling")
        theta = (d.get("rope_parameters") or {}).get("rope_theta", d.get("rope_theta", 10000.0))
        known = {"architectures", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters",
                 "max_position_embeddings", "tie_word_embeddings", "attention_bias", "mlp_bias", "bos_token_id", "eos_token_id",
                 "model_type", "torch_dtype", "dtype", "hidden_act"}
        return LlamaConfig(
            vocab_size=d["vocab_size"],
            hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"],
            num_hidden_layers=d["num_hidden_layers"],
            num_attention_heads=d["num_attention_heads"],
            num_key_value_heads=d.get("num_key_value_heads"),
            head_dim=d.get("head_dim"),
            rms_norm_eps=d.get("rms_norm_eps", 1e-6),
            rope_theta=theta,
            rope_scaling=dict(rp) if rp else None,
            max_position_embeddings=ctx,
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            architecture=arch,
            attention_bias=bool(d.get("attention_bias", False)) and arch != "Qwen2ForCausalLM",
            mlp_bias=bool(d.get("mlp_bias", False)),
            bos_token_id=d.get("bos_token_id"),
            eos_token_id=d.get("eos_token_id"),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_hf(self, torch_dtype: str = "float32") -> Dict[str, Any]:
        d: Dict[str, Any] = dict(self.extra)
        d.update({
            "architectures": [self.architecture],
            "model_type": MODEL_TYPE[self.architecture],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": torch_dtype,
        })
        if self.rope_scaling:
            d["rope_scaling"] = dict(self.rope_scaling)
        if self.architecture == "LlamaForCausalLM":
            d["attention_bias"] = self.attention_bias
            d["mlp_bias"] = self.mlp_bias
        if self.bos_token_id is not None:
            d["bos_token_id"] = self.bos_token_id
        if self.eos_token_id is not None:
            d["eos_token_id"] = self.eos_token_id
        return d


def rope_inv_freq(cfg: LlamaConfig) -> torch.Tensor:
    """HF's inv_freq (float32), with linear or llama3 scaling applied as transformers does."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    rs = cfg.rope_scaling or {}
    kind = str(rs.get("rope_type", rs.get("type", "default"))).lower()
    if kind == "linear":
        inv = inv / float(rs["factor"])
    elif kind == "llama3":
        factor = float(rs.get("factor", 8.0))
        low = float(rs.get("low_freq_factor", 1.0))
        high = float(rs.get("high_freq_factor", 4.0))
        old = float(rs.get("original_max_position_embeddings", 8192))
        low_wl, high_wl = old / low, old / high
        wl = 2 * math.pi / inv
        out = torch.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - low) / (high - low)
        smoothed = (1 - smooth) * out / factor + smooth * out
        mid = ~(wl < high_wl) & ~(wl > low_wl)
        inv = torch.where(mid, smoothed, out)
    elif kind != "default":
        raise LlamaError(f"RoPE scaling type {kind} is not supported (default, linear, llama3)")
    return inv


class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dt)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.nh, self.nkv, self.hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        qkv_b = c.attention_bias or c.qkv_bias
        self.q_proj = fastops.Linear(c.hidden_size, self.nh * self.hd, bias=qkv_b)
        self.k_proj = fastops.Linear(c.hidden_size, self.nkv * self.hd, bias=qkv_b)
        self.v_proj = fastops.Linear(c.hidden_size, self.nkv * self.hd, bias=qkv_b)
        self.o_proj = fastops.Linear(self.nh * self.hd, c.hidden_size, bias=c.attention_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.nkv != self.nh:
            rep = self.nh // self.nkv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        G = B * self.nh
        q = q.reshape(G, T, self.hd)
        k = k.reshape(G, T, self.hd)
        v = v.reshape(G, T, self.hd)
        scores = fastops.bmm(q, k.transpose(1, 2)) * (1.0 / math.sqrt(self.hd))
        scores = scores.view(B, self.nh, T, T) + mask
        p = torch.softmax(scores.float(), dim=-1).to(q.dtype).view(G, T, T)
        o = fastops.bmm(p, v).view(B, self.nh, T, self.hd).transpose(1, 2).reshape(B, T, self.nh * self.hd)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.gate_proj = fastops.Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.up_proj = fastops.Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.down_proj = fastops.Linear(c.intermediate_size, c.hidden_size, bias=c.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBackbone(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.model = LlamaBackbone(config)
        self.lm_head = None if config.tie_word_embeddings else fastops.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)
        self.gradient_checkpointing = False  # recompute each layer in backward (saves activation memory)

    def init_weights(self, seed: int = 0, std: float = 0.02, embed_std: Optional[float] = None, fan_in: bool = False) -> "LlamaForCausalLM":
        """Seeded init independent of the global RNG: normal matrices (std, or 1/sqrt(fan_in) when fan_in),
        normal embeddings (embed_std, default std), zero biases, unit norm weights."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("layernorm.weight") or name == "model.norm.weight":
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    s = std
                    if name == "model.embed_tokens.weight":
                        s = std if embed_std is None else embed_std
                    elif fan_in:
                        s = 1.0 / math.sqrt(p.shape[1])
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).mul_(s).to(p.dtype))
        return self

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids)

    def output_weight(self) -> torch.Tensor:
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return fastops.linear(hidden, self.output_weight())

    def hidden_states(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise LlamaError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = x.shape
        dev = x.device
        if position_ids is None:
            position_ids = torch.arange(T, device=dev).unsqueeze(0).expand(B, T)
        ang = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq.to(dev).float()  # [B, T, d/2]
        emb = torch.cat((ang, ang), dim=-1)
        cos = emb.cos().to(x.dtype).unsqueeze(1)  # [B, 1, T, d]
        sin = emb.sin().to(x.dtype).unsqueeze(1)
        neg = torch.finfo(x.dtype).min
        causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
        allowed = causal.view(1, 1, T, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask.to(torch.bool).view(B, 1, 1, T)
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=dev).masked_fill(~allowed, neg)
        for layer in self.model.layers:
            if self.gradient_checkpointing and torch.is_grad_enabled() and x.requires_grad:
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, mask, use_reentrant=True)
            else:
                x = layer(x, cos, sin, mask)
        return self.model.norm(x)

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None) -> torch.Tensor:
        return self.logits(self.hidden_states(input_ids, inputs_embeds, attention_mask, position_ids))


def _dtype(d: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    if d is None or isinstance(d, torch.dtype):
        return d
    m = {"F32": torch.float32, "FLOAT32": torch.float32, "F16": torch.float16, "FLOAT16": torch.float16,
         "BF16": torch.bfloat16, "BFLOAT16": torch.bfloat16}
    if d.upper() not in m:
        raise LlamaError(f"dtype {d} is not one of F32, F16, BF16")
    return m[d.upper()]


def load_hf_llama(dir: str, dtype: Union[str, torch.dtype] = torch.float32, device: str = "cpu") -> LlamaForCausalLM:
    """Load a Hugging Face Llama-family checkpoint dir (config.json + model.safetensors or an index + shards).

    Every tensor must be used (rotary inv_freq buffers and a tied copy of lm_head excepted); missing or
    unexpected tensors and shape mismatches raise LlamaError. The model is returned in eval mode with
    requires_grad left on; its config is `model.config`.
    """
    cfg_path = os.path.join(dir, "config.json")
    try:
        with open(cfg_path, "r", encoding="utf-8") as f:
            cfg = LlamaConfig.from_hf(json.load(f))
    except FileNotFoundError:
        raise LlamaError(f"{cfg_path}: no such file (a Hugging Face model directory has a config.json)") from None
    except json.JSONDecodeError as e:
        raise LlamaError(f"{cfg_path}: not valid JSON ({e})") from None
    except KeyError as e:
        raise LlamaError(f"{cfg_path}: missing {e}") from None
    dt = _dtype(dtype) or torch.float32
    single = os.path.join(dir, "model.safetensors")
    index = os.path.join(dir, "model.safetensors.index.json")
    files: Dict[str, list] = {}
    if os.path.exists(single):
        files[single] = list(read_header(single)[0].keys())
    elif os.path.exists(index):
        with open(index, "r", encoding="utf-8") as f:
            wm = json.load(f)["weight_map"]
        for name, fn in wm.items():
            if fn != os.path.basename(fn):
                raise LlamaError(f"{index}: shard name {fn!r} is not a plain file name")
            files.setdefault(os.path.join(dir, fn), []).append(name)
    else:
        raise LlamaError(f"{dir}: no model.safetensors or model.safetensors.index.json")
    model = LlamaForCausalLM(cfg)
    params = dict(model.named_parameters())
    # Checkpoints saved without the "model." prefix (bare LlamaModel) are accepted too.
    all_names = [n for ns in files.values() for n in ns]
    prefix = "" if "model.embed_tokens.weight" in all_names else "model."
    if prefix and "embed_tokens.weight" not in all_names:
        raise LlamaError(f"{dir}: no model.embed_tokens.weight (is this a Llama-family causal LM checkpoint?)")
    seen = set()
    with torch.no_grad():
        for path, names in files.items():
            keep = [n for n in names if not n.endswith("rotary_emb.inv_freq")]
            for name, t in read_safetensors(path, keep).items():
                key = name if name == "lm_head.weight" else prefix + name
                if key == "lm_head.weight" and cfg.tie_word_embeddings:
                    continue
                p = params.get(key)
                if p is None:
                    raise LlamaError(f"{dir}: tensor {name} is not part of a {cfg.num_hidden_layers}-layer {cfg.architecture}")
                if tuple(t.shape) != tuple(p.shape):
                    raise LlamaError(f"{dir}: {name} has shape {list(t.shape)}; config.json implies {list(p.shape)}")
                p.copy_(t.to(torch.float32))
                seen.add(key)
    missing = [n for n in params if n not in seen]
    if missing:
        raise LlamaError(f"{dir}: missing tensor(s) {', '.join(missing[:3])}")
    return model.to(device=device, dtype=dt).eval()


def save_hf_llama(model: LlamaForCausalLM, config: Optional[LlamaConfig], dir: str,
                  dtype: Union[str, torch.dtype, None] = None, tokenizer_from: Optional[str] = None,
                  metadata: Optional[Dict[str, str]] = None) -> None:
    """Write `dir`/config.json + `dir`/model.safetensors in HF names (readable by transformers and by
    `llm2clip convert-llm`). dtype: "F32" | "F16" | "BF16" (default: the model's parameter dtype)."""
    config = config or model.config
    os.makedirs(dir, exist_ok=True)
    dt = _dtype(dtype) or next(model.parameters()).dtype
    tensors: Dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        tensors[name] = p.detach().to("cpu", dt).contiguous()
    write_safetensors(os.path.join(dir, "model.safetensors"), tensors, {"format": "pt", **(metadata or {})})
    names = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
    with open(os.path.join(dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config.to_hf(names.get(dt, "float32")), f, indent=2)
        f.write("\n")
    if tokenizer_from and os.path.abspath(tokenizer_from) != os.path.abspath(dir):
        for fn in TOKENIZER_FILES:
            src = os.path.join(tokenizer_from, fn)
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(dir, fn))
