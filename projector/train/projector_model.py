"""LLaVA's mm_projector in PyTorch, with the names and file format of projector/spec.ts.

    build_projector(type, input_dim, output_dim, hidden_dim=None) -> nn.Module
        "linear"        nn.Linear                         weights `weight`, `bias`
        "mlp{N}x_gelu"  Linear (GELU Linear) × (N−1)      weights `0.*`, `2.*`, …, `{2N−2}.*`
    save_projector(dir, module, type, input_dim, output_dim, hidden_dim=None, **manifest_fields)
        writes projector.json + projector.safetensors (F32)
    load_projector(dir) -> (module, manifest dict)
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from . import fastops
from .st import read_safetensors, write_safetensors

PROJECTOR_JSON = "projector.json"
PROJECTOR_WEIGHTS = "projector.safetensors"
_MLP = re.compile(r"^mlp([1-9]\d?)x_gelu$")


def projector_depth(kind: str) -> int:
    if kind == "linear":
        return 1
    m = _MLP.match(kind)
    if not m:
        raise ValueError(f'unknown projector type {kind!r} (linear or mlp<N>x_gelu)')
    return int(m.group(1))


def build_projector(kind: str, input_dim: int, output_dim: int, hidden_dim: Optional[int] = None) -> nn.Module:
    """Fresh projector with PyTorch's default nn.Linear init (what LLaVA uses); seed torch before calling."""
    depth = projector_depth(kind)
    if kind == "linear":
        return fastops.Linear(input_dim, output_dim)
    hidden = hidden_dim or output_dim
    layers: list = [fastops.Linear(input_dim, hidden if depth > 1 else output_dim)]
    for i in range(1, depth):
        layers.append(nn.GELU())
        layers.append(fastops.Linear(hidden, output_dim if i == depth - 1 else hidden))
    return nn.Sequential(*layers)


def save_projector(dir: str, module: nn.Module, kind: str, input_dim: int, output_dim: int,
                   hidden_dim: Optional[int] = None, **fields: Any) -> Dict[str, Any]:
    """Writes DIR/projector.safetensors (float32) and DIR/projector.json; `fields` adds optional manifest
    entries of projector/spec.ts (tower, llm, tokensPerImage, resizeMode). Returns the manifest."""
    os.makedirs(dir, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}
    write_safetensors(os.path.join(dir, PROJECTOR_WEIGHTS), tensors, {"format": "pt"})
    manifest: Dict[str, Any] = {"format": "llm2clip-projector", "version": 1, "type": kind, "inputDim": input_dim}
    if kind != "linear":
        manifest["hiddenDim"] = hidden_dim or output_dim
    manifest["outputDim"] = output_dim
    manifest.update({k: v for k, v in fields.items() if v is not None})
    tmp = os.path.join(dir, PROJECTOR_JSON + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(dir, PROJECTOR_JSON))
    return manifest


def load_projector(dir: str) -> Tuple[nn.Module, Dict[str, Any]]:
    with open(os.path.join(dir, PROJECTOR_JSON), "r", encoding="utf-8") as f:
        m = json.load(f)
    if m.get("format") != "llm2clip-projector":
        raise ValueError(f"{dir}/{PROJECTOR_JSON}: not an llm2clip projector manifest")
    module = build_projector(m["type"], m["inputDim"], m["outputDim"], m.get("hiddenDim"))
    sd = read_safetensors(os.path.join(dir, PROJECTOR_WEIGHTS))
    module.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)
    return module, m
