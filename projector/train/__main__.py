"""python3 -m projector.train — train a projector (LLaVA stage 1, optionally stage 2) on llm2clip shards."""
from __future__ import annotations

import argparse
import os
import sys

# glibc malloc settings that remove page-fault stalls on large tensor copies (cpu-training.md). They
# must be in the environment when the process starts, so the trainer re-executes itself once with them.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824", "MALLOC_TOP_PAD_": "268435456"}


def _maybe_reexec() -> None:
    if sys.platform != "linux" or os.environ.get("LLM2CLIP_NO_REEXEC") or all(k in os.environ for k in _MALLOC):
        return
    env = dict(os.environ)
    for k, v in _MALLOC.items():
        env.setdefault(k, v)
    env["LLM2CLIP_NO_REEXEC"] = "1"
    os.execve(sys.executable, [sys.executable, "-m", "projector.train", *sys.argv[1:]], env)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python3 -m projector.train",
        description="Train an llm2clip projector on shards from `llm2clip features --dataset`: LLaVA stage 1 "
                    "(projector trained, LLM frozen) or stage 2 (projector + LLM).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--shards", required=True, help="directory written by `llm2clip features --dataset ... --out DIR`")
    p.add_argument("--llm", required=True, help="Hugging Face Llama-family checkpoint dir the shards' GGUF was converted from")
    p.add_argument("--out", required=True, help="output dir: projector.json + projector.safetensors (+ llm/ for stage 2), checkpoints/")
    p.add_argument("--projector-type", default="mlp2x_gelu", help="linear or mlp<N>x_gelu")
    p.add_argument("--hidden-dim", type=int, default=None, help="hidden width of mlp projectors (default: the LLM width, as LLaVA)")
    p.add_argument("--init-projector", default=None, help="start from this projector dir (e.g. the stage-1 result for --stage 2)")
    p.add_argument("--stage", type=int, default=1, choices=(1, 2), help="1: projector only; 2: projector + LLM")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (LLaVA stage 1: 1e-3, stage 2: 2e-5)")
    p.add_argument("--llm-lr", type=float, default=None, help="stage 2: peak learning rate of the LLM (default: --lr)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-ratio", type=float, default=0.03)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="0 disables clipping")
    p.add_argument("--batch-size", type=int, default=8, help="rows per micro-batch")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    p.add_argument("--max-len", type=int, default=None, help="truncate rows to this many positions (rows whose image would be cut are dropped)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="bf16 = autocast; weights and AdamW state stay float32")
    p.add_argument("--llm-dtype", default="fp32", choices=("fp32", "bf16"), help="storage of the frozen LLM in stage 1")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every K steps (a final one is always written)")
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--log-every", type=int, default=1)
    p.add_argument("--resume", nargs="?", const="auto", default=None, help="continue from the latest checkpoint in OUT/checkpoints, or from PATH")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this step as if interrupted (resume later with --resume)")
    p.add_argument("--grad-checkpoint", action="store_true", help="recompute LLM layers in backward (less memory)")
    p.add_argument("--no-fast-cpu", action="store_true", help="use plain torch ops instead of the oneDNN kernels")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    from .trainer import TrainConfig, train

    cfg = TrainConfig(
        shards=a.shards, llm=a.llm, out=a.out, projector_type=a.projector_type, hidden_dim=a.hidden_dim, stage=a.stage,
        lr=a.lr, llm_lr=a.llm_lr, weight_decay=a.weight_decay, warmup_ratio=a.warmup_ratio, max_grad_norm=a.max_grad_norm,
        batch_size=a.batch_size, grad_accum=a.grad_accum, epochs=a.epochs, max_steps=a.max_steps, max_len=a.max_len,
        precision=a.precision, llm_dtype=a.llm_dtype, device=a.device, threads=a.threads, seed=a.seed,
        save_every=a.save_every, keep_checkpoints=a.keep_checkpoints, log_every=a.log_every, resume=a.resume,
        stop_after=a.stop_after, grad_checkpoint=a.grad_checkpoint, init_projector=a.init_projector, fast_cpu=not a.no_fast_cpu, quiet=a.quiet,
    )
    try:
        train(cfg)
    except (ValueError, OSError) as e:
        sys.stderr.write(f"projector.train: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    _maybe_reexec()
    sys.exit(main())
