"""Fast CPU kernels for Debian's python3-torch (see ../shared/research/cpu-training.md).

Debian's torch links a generic reference BLAS (~5 GFLOP/s per thread), but carries oneDNN kernels that
run 30–40× faster. These wrappers route float32 CPU work through oneDNN and fall back to the plain ops
everywhere else (CUDA, bf16/fp16, autocast, no mkldnn), so results are the same maths either way:
oneDNN sums in a different order, so outputs differ from the plain ops by float32 rounding only
(measured ≤ ~1e-5 relative; see test/train).

    linear(x, weight, bias=None)        == torch.nn.functional.linear
    bmm(a, b)                           == torch.bmm, for [G, M, K] @ [G, K, N]
    Linear                              nn.Linear whose forward uses linear()
    set_enabled(flag) / enabled()       global switch (default: on when torch.backends.mkldnn is available)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_ENABLED = bool(torch.backends.mkldnn.is_available())


def set_enabled(flag: bool) -> None:
    global _ENABLED
    _ENABLED = bool(flag) and bool(torch.backends.mkldnn.is_available())


def enabled() -> bool:
    return _ENABLED


def _use_fast(*ts: torch.Tensor) -> bool:
    if not _ENABLED:
        return False
    if torch.is_autocast_cpu_enabled():
        return False
    for t in ts:
        if t is not None and (t.device.type != "cpu" or t.dtype != torch.float32):
            return False
    return True


def _mm_nt(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """a [M, K] @ b[N, K]^T + bias[N] through oneDNN (a, b dense contiguous float32)."""
    return torch._C._nn.mkldnn_linear(a.contiguous().to_mkldnn(), b.contiguous(), bias).to_dense()


# W^T of frozen weights (stage 1's LLM), reused across backward passes; keyed by tensor identity,
# invalidated by torch's in-place version counter, bounded in bytes (then simply recomputed).
_WT_CACHE: "dict[int, tuple]" = {}
_WT_BUDGET = 1 << 30
_wt_bytes = 0


def _transposed(w: torch.Tensor) -> torch.Tensor:
    global _wt_bytes
    if w.requires_grad:
        return w.t().contiguous()
    key = id(w)
    hit = _WT_CACHE.get(key)
    if hit is not None and hit[0] is w and hit[1] == w._version:
        return hit[2]
    wt = w.t().contiguous()
    size = wt.numel() * wt.element_size()
    if _wt_bytes + size > _WT_BUDGET:
        _WT_CACHE.clear()
        _wt_bytes = 0
    if size <= _WT_BUDGET // 4:
        _WT_CACHE[key] = (w, w._version, wt)
        _wt_bytes += size
    return wt


class _MkldnnLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        n_out = weight.shape[0]
        b = bias if bias is not None else x.new_zeros(n_out)
        if x2.shape[0] == 0:
            y = x2.new_zeros(0, n_out)
        else:
            y = _mm_nt(x2, weight, b)
        ctx.save_for_backward(x2)
        # The weight is kept as a plain attribute: saving a leaf through save_for_backward trips torch
        # 1.13's non-reentrant activation checkpointing ("No grad accumulator for a saved leaf").
        ctx.weight = weight
        ctx.has_bias = bias is not None
        return y.reshape(*shape[:-1], n_out)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        (x2,) = ctx.saved_tensors
        weight = ctx.weight
        gy2 = gy.reshape(-1, weight.shape[0]).contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _mm_nt(gy2, _transposed(weight), gy2.new_zeros(weight.shape[1])).reshape(*gy.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:
            gw = _mm_nt(gy2.t(), x2.t(), gy2.new_zeros(x2.shape[1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy2.sum(0)
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor = None) -> torch.Tensor:
    if _use_fast(x, weight, bias) and x.numel() > 0:
        return _MkldnnLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched matmul [G, M, K] @ [G, K, N] → [G, M, N].

    On CPU float32 it runs as a grouped 1×1 convolution (oneDNN): out[g, :, m] = W_g · a[g, m, :] with
    W_g = b[g]^T as G groups of N filters over K channels. The dilation of 2 changes nothing for a 1×1
    kernel but makes torch pick its oneDNN convolution. Gradients flow through conv2d's own backward.
    """
    if not _use_fast(a, b):
        return torch.bmm(a, b)
    G, M, K = a.shape
    N = b.shape[2]
    inp = a.transpose(1, 2).reshape(1, G * K, M, 1)
    w = b.transpose(1, 2).reshape(G * N, K, 1, 1)
    out = F.conv2d(inp, w, groups=G, dilation=2)
    return out.reshape(G, N, M).transpose(1, 2)


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state_dict names) computed through linear()."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return linear(x, self.weight, self.bias)
