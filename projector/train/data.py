"""Training shards written by `llm2clip features --dataset` (src/train/shards.ts), as batches.

A row is one conversation: token ids with each image's rows at [imageStarts[k], imageStarts[k] +
tokensPerImage) (placeholder ids there; version-1 shards had one `imageStart`), and label spans — positions whose tokens are targets (answer tokens and the
end-of-turn token). The model predicts token p from position p − 1.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

SHARD_MANIFEST = "manifest.json"


class ShardError(ValueError):
    pass


@dataclass
class Row:
    id: str
    shard: int
    images: List[int]  # indices into the shard's features, one per image of the conversation
    tokens: np.ndarray  # int64 [T]
    image_starts: List[int]  # where each image's rows begin
    label_pos: np.ndarray  # int64 positions p with a target token (p ≥ 1)


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] int64, right-padded with the placeholder id
    features: torch.Tensor  # [K, N, W] float32: every image of the batch, row by row
    image_at: List[Tuple[int, int]]  # (row, start) of each of the K images
    lengths: List[int]
    label_b: torch.Tensor  # [L] row of each target
    label_p: torch.Tensor  # [L] position of each target token
    label_ids: torch.Tensor  # [L] target token ids

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: str) -> "Batch":
        return Batch(self.input_ids.to(device), self.features.to(device), self.image_at, self.lengths,
                     self.label_b.to(device), self.label_p.to(device), self.label_ids.to(device))


class ShardDataset:
    """All rows of a shard directory; features stay memory-mapped until a batch needs them."""

    def __init__(self, dir: str, max_len: Optional[int] = None):
        path = os.path.join(dir, SHARD_MANIFEST)
        try:
            with open(path, "r", encoding="utf-8") as f:
                self.manifest: Dict[str, Any] = json.load(f)
        except FileNotFoundError:
            raise ShardError(f"{path}: no such file (make shards with `llm2clip features --dataset ... --out {dir}`)") from None
        m = self.manifest
        if m.get("format") != "llm2clip-train-shards" or m.get("version") not in (1, 2):
            raise ShardError(f"{path}: not an llm2clip training-shard manifest")
        if not m.get("complete"):
            raise ShardError(f"{path}: the shards are incomplete; rerun the same `llm2clip features --dataset` command to finish them")
        self.dir = dir
        self.tokens_per_image = int(m["tokensPerImage"])
        self.width = int(m["tower"]["width"])
        self.placeholder = int(m["placeholder"])
        self.features: List[np.ndarray] = []
        self.rows: List[Row] = []
        self.dropped: List[str] = []
        N = self.tokens_per_image
        for si, entry in enumerate(m["shards"]):
            with open(os.path.join(dir, entry["name"] + ".json"), "r", encoding="utf-8") as f:
                shard = json.load(f)
            feats = np.load(os.path.join(dir, shard["features"]), mmap_mode="r")
            if feats.dtype not in (np.float32, np.float16) or feats.ndim != 3 or feats.shape[1:] != (N, self.width):
                raise ShardError(f"{dir}/{shard['features']}: shape {feats.shape} {feats.dtype}; expected [n, {N}, {self.width}] float32 or float16")
            self.features.append(feats)
            for r in shard["rows"]:
                tokens = np.asarray(r["tokens"], dtype=np.int64)
                pos = np.concatenate([np.arange(s, e, dtype=np.int64) for s, e in r["labels"]]) if r["labels"] else np.zeros(0, np.int64)
                images = [int(i) for i in r["images"]] if "images" in r else [int(r["image"])]
                starts = [int(x) for x in r["imageStarts"]] if "imageStarts" in r else [int(r["imageStart"])]
                spans = sorted(starts)
                if (len(images) != len(starts) or not images or any(not (0 <= i < feats.shape[0]) for i in images)
                        or spans[0] < 0 or spans[-1] + N > len(tokens) or any(b - a < N for a, b in zip(spans, spans[1:]))
                        or (pos.size and (pos.min() < 1 or pos.max() >= len(tokens)))):
                    raise ShardError(f"{dir}/{entry['name']}.json: row {r['id']!r} is inconsistent (image index, image span or labels out of range)")
                if max_len is not None and len(tokens) > max_len:
                    tokens = tokens[:max_len]
                    pos = pos[pos < max_len]
                    if spans[-1] + N > max_len:
                        self.dropped.append(r["id"])
                        continue
                if pos.size == 0:
                    self.dropped.append(r["id"])
                    continue
                self.rows.append(Row(str(r["id"]), si, images, tokens, starts, pos))
        if not self.rows:
            raise ShardError(f"{dir}: no trainable rows" + (f" ({len(self.dropped)} dropped by --max-len)" if self.dropped else ""))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def label_tokens(self) -> int:
        return int(sum(r.label_pos.size for r in self.rows))

    def batch(self, indices: Sequence[int]) -> Batch:
        rows = [self.rows[i] for i in indices]
        T = max(len(r.tokens) for r in rows)
        ids = np.full((len(rows), T), self.placeholder, dtype=np.int64)
        K = sum(len(r.images) for r in rows)
        feats = np.empty((K, self.tokens_per_image, self.width), dtype=np.float32)
        image_at: List[Tuple[int, int]] = []
        lb, lp, li = [], [], []
        for b, r in enumerate(rows):
            ids[b, : len(r.tokens)] = r.tokens
            for i, start in zip(r.images, r.image_starts):
                feats[len(image_at)] = self.features[r.shard][i]
                image_at.append((b, start))
            lb.append(np.full(r.label_pos.size, b, dtype=np.int64))
            lp.append(r.label_pos)
            li.append(r.tokens[r.label_pos])
        return Batch(
            torch.from_numpy(ids),
            torch.from_numpy(feats),
            image_at,
            [len(r.tokens) for r in rows],
            torch.from_numpy(np.concatenate(lb)),
            torch.from_numpy(np.concatenate(lp)),
            torch.from_numpy(np.concatenate(li)),
        )


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of one epoch: a pure function of (seed, epoch), so a resumed run sees the same data."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919) % (2**63 - 1))
    return torch.randperm(n, generator=g)


def step_rows(n: int, seed: int, step: int, rows_per_step: int, cache: Dict[int, torch.Tensor]) -> List[int]:
    """Rows of optimizer step `step`: slice [step·G, (step+1)·G) of the endless stream of epoch orders."""
    out: List[int] = []
    for r in range(step * rows_per_step, (step + 1) * rows_per_step):
        e, i = divmod(r, n)
        if e not in cache:
            if len(cache) > 2:
                cache.clear()
            cache[e] = epoch_order(n, seed, e)
        out.append(int(cache[e][i]))
    return out
