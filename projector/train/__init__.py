"""llm2clip projector trainer (LLaVA stage 1 / stage 2) in plain PyTorch; see README.md.

Modules: st (safetensors I/O), llama (HF Llama-family decoder), fastops (oneDNN kernels for Debian's
torch), projector_model (mm_projector in the projector/spec.ts format), data (shards), trainer.
Run: python3 -m projector.train --help
"""
