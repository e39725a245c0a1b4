"""LLaVA-style projector training on llm2clip shards.

Stage 1 (default): the projector is trained, the LLM is frozen (LLaVA's feature-alignment pretraining).
Stage 2 (`stage=2`): projector and LLM are both trained (LLaVA's visual instruction tuning, full
fine-tune). The loss is next-token cross-entropy on the label positions only (answer tokens and the
end-of-turn token), summed over the optimizer step's rows and divided by their label-token count, so
gradient accumulation is exactly a larger batch.

Determinism: the data order is a pure function of (seed, epoch) (data.epoch_order) and the
learning-rate schedule a pure function of the step, so a checkpoint holds only the step, the weights,
AdamW's moments and the RNG states; resuming repeats the uninterrupted run's arithmetic exactly on the
same machine and thread count (bitwise: the float32 kernels are deterministic for fixed shapes).
"""
from __future__ import annotations

import glob
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from . import fastops
from .data import Batch, ShardDataset, step_rows
from .llama import LlamaForCausalLM, load_hf_llama, save_hf_llama
from .projector_model import build_projector, save_projector
from .st import read_safetensors, write_safetensors

CKPT_DIR = "checkpoints"
LOG_FILE = "train_log.jsonl"


@dataclass
class TrainConfig:
    shards: str
    llm: str
    out: str
    projector_type: str = "mlp2x_gelu"
    hidden_dim: Optional[int] = None
    stage: int = 1
    lr: float = 1e-3
    llm_lr: Optional[float] = None
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: Optional[int] = None
    max_len: Optional[int] = None
    precision: str = "fp32"  # fp32 | bf16 (autocast; weights and optimizer stay float32)
    llm_dtype: str = "fp32"  # dtype of a frozen (stage 1) LLM: fp32 | bf16
    device: str = "auto"
    threads: Optional[int] = None
    seed: int = 0
    save_every: int = 0  # checkpoint every K optimizer steps (0: only at the end)
    keep_checkpoints: int = 2
    log_every: int = 1
    resume: Optional[str] = None  # "auto" (latest in OUT/checkpoints) or a checkpoint path
    stop_after: Optional[int] = None  # stop after this step as if interrupted (tests, time-boxed jobs)
    grad_checkpoint: bool = False
    init_projector: Optional[str] = None  # start from an existing projector dir (e.g. stage 1's output for stage 2)
    fast_cpu: bool = True  # oneDNN kernels (fastops) on CPU float32
    quiet: bool = False


# Settings that change the arithmetic: a resumed run must use the same ones.
RESUME_KEYS = ("projector_type", "hidden_dim", "stage", "lr", "llm_lr", "weight_decay", "warmup_ratio", "betas", "eps", "max_grad_norm",
               "batch_size", "grad_accum", "epochs", "max_steps", "max_len", "precision", "llm_dtype", "seed", "init_projector", "fast_cpu")


def lr_factor(step: int, total: int, warmup: int) -> float:
    """transformers' get_cosine_schedule_with_warmup (LLaVA's lr_scheduler_type=cosine)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this PyTorch has no CUDA device")
    return torch.device(name)


def splice(embeds: torch.Tensor, image_rows: torch.Tensor, image_at: List[Tuple[int, int]]) -> torch.Tensor:
    """Token embeddings [B, T, D] with image k's rows image_rows[k] [N, D] put at row b, [start, start + N)
    for (b, start) = image_at[k] (built by concatenation, so gradients reach both the embeddings and the rows)."""
    N = image_rows.shape[1]
    by_row: Dict[int, List[Tuple[int, int]]] = {}
    for k, (b, s) in enumerate(image_at):
        by_row.setdefault(b, []).append((s, k))
    out = []
    for b in range(embeds.shape[0]):
        pieces, at = [], 0
        for s, k in sorted(by_row.get(b, [])):
            pieces += [embeds[b, at:s], image_rows[k].to(embeds.dtype)]
            at = s + N
        pieces.append(embeds[b, at:])
        out.append(torch.cat(pieces, 0))
    return torch.stack(out, 0)


def batch_loss_sum(llm: LlamaForCausalLM, projector: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Summed cross-entropy over the batch's target tokens (float32)."""
    rows = projector(batch.features)
    x = splice(llm.embed(batch.input_ids), rows, batch.image_at)
    h = llm.hidden_states(inputs_embeds=x)
    logits = llm.logits(h[batch.label_b, batch.label_p - 1]).float()
    return F.cross_entropy(logits, batch.label_ids, reduction="sum")


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        if cfg.stage not in (1, 2):
            raise SystemExit(f"--stage must be 1 or 2, got {cfg.stage}")
        if cfg.precision not in ("fp32", "bf16"):
            raise SystemExit(f"--precision must be fp32 or bf16, got {cfg.precision}")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        fastops.set_enabled(cfg.fast_cpu)
        self.device = pick_device(cfg.device)
        self.data = ShardDataset(cfg.shards, cfg.max_len)
        m = self.data.manifest
        llm_dtype = torch.bfloat16 if (cfg.llm_dtype == "bf16" and cfg.stage == 1) else torch.float32
        self.llm = load_hf_llama(cfg.llm, dtype=llm_dtype, device=str(self.device))
        c = self.llm.config
        if c.hidden_size != m["llm"]["nEmbd"] or c.vocab_size != m["llm"]["nVocab"]:
            raise SystemExit(
                f"--llm {cfg.llm}: hidden_size {c.hidden_size}, vocab_size {c.vocab_size}; the shards were tokenized for "
                f"{m['llm']['file']} (n_embd {m['llm']['nEmbd']}, {m['llm']['nVocab']} tokens): use the HF checkpoint that GGUF was converted from")
        self.llm.gradient_checkpointing = cfg.grad_checkpoint
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        if cfg.init_projector:
            from .projector_model import load_projector
            self.projector, pm = load_projector(cfg.init_projector)
            if pm["inputDim"] != self.data.width or pm["outputDim"] != c.hidden_size:
                raise SystemExit(f"--init-projector {cfg.init_projector}: {pm['inputDim']}→{pm['outputDim']}, shards need {self.data.width}→{c.hidden_size}")
            cfg.projector_type, cfg.hidden_dim = pm["type"], pm.get("hiddenDim")
        else:
            self.projector = build_projector(cfg.projector_type, self.data.width, c.hidden_size, cfg.hidden_dim)
        self.projector.to(self.device)
        self.llm.requires_grad_(cfg.stage == 2)
        self.llm.train(cfg.stage == 2)
        groups = [{"params": list(self.projector.parameters()), "lr": cfg.lr, "base_lr": cfg.lr}]
        if cfg.stage == 2:
            llm_lr = cfg.llm_lr if cfg.llm_lr is not None else cfg.lr
            groups.append({"params": list(self.llm.parameters()), "lr": llm_lr, "base_lr": llm_lr})
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
        self.rows_per_step = cfg.batch_size * cfg.grad_accum
        n = len(self.data)
        self.total_steps = cfg.max_steps if cfg.max_steps else max(1, math.ceil(cfg.epochs * n / self.rows_per_step))
        self.warmup = math.ceil(self.total_steps * cfg.warmup_ratio)
        self.step = 0
        self.order_cache: Dict[int, torch.Tensor] = {}
        self.log_path = os.path.join(cfg.out, LOG_FILE)
        os.makedirs(cfg.out, exist_ok=True)
        if cfg.resume:
            self._resume(cfg.resume)

    # --- checkpoints -------------------------------------------------------------------------------
    def _ckpt_dir(self) -> str:
        return os.path.join(self.cfg.out, CKPT_DIR)

    def save_checkpoint(self) -> str:
        """DIR/checkpoints/step-NNNNNNN/: state.safetensors (weights, AdamW moments, torch RNG) + state.json
        (step, settings, optimizer hyperparameters, Python RNG). No pickle, so loading runs no code."""
        d = self._ckpt_dir()
        os.makedirs(d, exist_ok=True)
        tensors: Dict[str, torch.Tensor] = {}
        for k, v in self.projector.state_dict().items():
            tensors[f"projector.{k}"] = v
        if self.cfg.stage == 2:
            for k, v in self.llm.state_dict().items():
                tensors[f"llm.{k}"] = v
        osd = self.opt.state_dict()
        scalars: Dict[str, Any] = {}
        for idx, st in osd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optimizer.{idx}.{k}"] = v
                else:
                    scalars[f"{idx}.{k}"] = v
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, t in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = t
        pv, pstate, pgauss = random.getstate()
        meta = {
            "format": "llm2clip-projector-train-ckpt",
            "version": 1,
            "step": self.step,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.cfg).items()},
            "optimizer": {"param_groups": osd["param_groups"], "scalars": scalars},
            "python_rng": [pv, list(pstate), pgauss],
        }
        path = os.path.join(d, f"step-{self.step:07d}")
        tmp = path + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        write_safetensors(os.path.join(tmp, "state.safetensors"), {k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        with open(os.path.join(tmp, "state.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        for old in self._checkpoints()[: -max(1, self.cfg.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def _checkpoints(self) -> List[str]:
        return sorted(p for p in glob.glob(os.path.join(self._ckpt_dir(), "step-*")) if not p.endswith(".partial"))

    def _resume(self, spec: str) -> None:
        path = spec
        if spec == "auto":
            found = self._checkpoints()
            if not found:
                self._say(f"--resume: no checkpoint in {self._ckpt_dir()}; starting from step 0")
                return
            path = found[-1]
        try:
            with open(os.path.join(path, "state.json"), "r", encoding="utf-8") as f:
                meta = json.load(f)
            tensors = read_safetensors(os.path.join(path, "state.safetensors"))
        except (OSError, ValueError) as e:
            raise SystemExit(f"--resume {path}: not a readable trainer checkpoint ({e})") from None
        if meta.get("format") != "llm2clip-projector-train-ckpt":
            raise SystemExit(f"--resume {path}: not a trainer checkpoint")
        old, now = meta["config"], asdict(self.cfg)
        diff = [k for k in RESUME_KEYS if (list(now[k]) if isinstance(now[k], tuple) else now[k]) != old.get(k)]
        if diff:
            raise SystemExit(f"--resume {path}: the checkpoint was made with different settings: " +
                             ", ".join(f"{k} {old.get(k)!r} → {now[k]!r}" for k in diff))
        dev = self.device
        self.projector.load_state_dict({k[len("projector."):]: v for k, v in tensors.items() if k.startswith("projector.")})
        if self.cfg.stage == 2:
            self.llm.load_state_dict({k[len("llm."):]: v for k, v in tensors.items() if k.startswith("llm.")})
        state: Dict[int, Dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optimizer."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v.to(dev) if name != "step" else v
        for k, v in meta["optimizer"]["scalars"].items():
            idx, name = k.split(".", 1)
            state.setdefault(int(idx), {})[name] = v
        self.opt.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        pv, pstate, pgauss = meta["python_rng"]
        random.setstate((pv, tuple(pstate), pgauss))
        self.step = int(meta["step"])
        self._say(f"resumed from {path} at step {self.step}")

    # --- training ----------------------------------------------------------------------------------
    def _say(self, msg: str) -> None:
        if not self.cfg.quiet:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def train_step(self) -> Dict[str, float]:
        cfg = self.cfg
        rows = step_rows(len(self.data), cfg.seed, self.step, self.rows_per_step, self.order_cache)
        factor = lr_factor(self.step, self.total_steps, self.warmup)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        n_labels = sum(self.data.rows[i].label_pos.size for i in rows)
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for k in range(cfg.grad_accum):
            batch = self.data.batch(rows[k * cfg.batch_size:(k + 1) * cfg.batch_size]).to(str(self.device))
            with self._autocast():
                loss_sum = batch_loss_sum(self.llm, self.projector, batch)
            (loss_sum / n_labels).backward()
            total += float(loss_sum.detach())
        params = [p for g in self.opt.param_groups for p in g["params"]]
        if cfg.max_grad_norm and cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        self.opt.step()
        self.step += 1
        return {"loss": total / n_labels, "lr": self.opt.param_groups[0]["lr"], "rows": len(rows), "labels": n_labels}

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        n = len(self.data)
        self._say(f"training stage {cfg.stage}: {n} rows ({self.data.label_tokens} answer tokens), {self.total_steps} steps of "
                  f"{cfg.batch_size}×{cfg.grad_accum} rows, lr {cfg.lr:g} cosine, warmup {self.warmup}, {cfg.precision}, "
                  f"device {self.device}, {torch.get_num_threads()} threads, projector {cfg.projector_type}"
                  + (f"; {len(self.data.dropped)} row(s) dropped by --max-len" if self.data.dropped else ""))
        t_start = time.perf_counter()
        window_t, window_rows, window_loss, window_n = time.perf_counter(), 0, 0.0, 0
        last: Dict[str, float] = {}
        interrupted = False
        with open(self.log_path, "a", encoding="utf-8") as log:
            while self.step < self.total_steps:
                r = self.train_step()
                last = r
                window_rows += r["rows"]
                window_loss += r["loss"]
                window_n += 1
                if self.step % max(1, cfg.log_every) == 0 or self.step == self.total_steps:
                    now = time.perf_counter()
                    sps = window_rows / max(now - window_t, 1e-9)
                    rec = {"step": self.step, "loss": window_loss / window_n, "lr": r["lr"], "samples_per_s": sps,
                           "elapsed_s": now - t_start}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    self._say(f"step {self.step}/{self.total_steps}  loss {rec['loss']:.4f}  lr {r['lr']:.2e}  {sps:.1f} samples/s")
                    window_t, window_rows, window_loss, window_n = now, 0, 0.0, 0
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < self.total_steps:
                    self._say(f"checkpoint {self.save_checkpoint()}")
                if cfg.stop_after is not None and self.step >= cfg.stop_after and self.step < self.total_steps:
                    interrupted = True
                    break
        if interrupted:
            self._say(f"stopped after step {self.step} (--stop-after); continue with --resume")
            return {"step": self.step, "interrupted": True, "loss": last.get("loss")}
        self.save_checkpoint()
        return self.finish(time.perf_counter() - t_start, last)

    def finish(self, seconds: float, last: Dict[str, float]) -> Dict[str, Any]:
        cfg, m = self.cfg, self.data.manifest
        t = m["tower"]
        manifest = save_projector(
            cfg.out, self.projector, cfg.projector_type, self.data.width, self.llm.config.hidden_size, cfg.hidden_dim,
            tower={"arch": t["arch"], "width": t["width"], "patchTokens": t["patchTokens"], "sha256": t["sha256"], "tap": t["tap"]},
            llm={"nEmbd": self.llm.config.hidden_size, "name": m["llm"]["name"]},
            tokensPerImage=self.data.tokens_per_image,
            resizeMode=t["resizeMode"],
        )
        if cfg.stage == 2:
            save_hf_llama(self.llm, self.llm.config, os.path.join(cfg.out, "llm"), dtype="F32", tokenizer_from=cfg.llm,
                          metadata={"llm2clip": "stage-2 fine-tune"})
        summary = {
            "steps": self.step,
            "final_loss": last.get("loss"),
            "seconds": seconds,
            "rows": len(self.data),
            "shards": os.path.abspath(cfg.shards),
            "template": m["template"],
            "llm_gguf": m["llm"],
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "projector": manifest,
        }
        with open(os.path.join(cfg.out, "train.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        self._say(f"wrote {os.path.join(cfg.out, 'projector.json')} and projector.safetensors" +
                  (f" and the fine-tuned LLM in {os.path.join(cfg.out, 'llm')}" if cfg.stage == 2 else ""))
        return summary


def train(cfg: TrainConfig) -> Dict[str, Any]:
    return Trainer(cfg).run()
