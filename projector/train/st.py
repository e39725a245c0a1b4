"""safetensors read/write with nothing but the standard library and torch (no `safetensors` package).

Format: u64 little-endian header length N, N bytes of JSON header
({name: {"dtype", "shape", "data_offsets": [begin, end]}, optional "__metadata__": {str: str}}),
then the data section; offsets are relative to its start. The header is padded with spaces to a
multiple of 8 bytes, as the reference writer does.

Stable API (used by the trainer, llama.py and the demo builder):
    read_safetensors(path, names=None, device="cpu") -> dict[str, torch.Tensor]
    read_header(path) -> (tensors: dict[str, dict], metadata: dict[str, str], data_start: int)
    write_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None)
Tensors come back in their stored dtype (F32 → float32, F16 → float16, BF16 → bfloat16, …).
"""
from __future__ import annotations

import json
import os
import struct
from typing import Dict, Iterable, Optional, Tuple

import torch

MAX_HEADER_BYTES = 100_000_000

DTYPES: Dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES: Dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class SafetensorsError(ValueError):
    pass


def read_header(path: str) -> Tuple[Dict[str, dict], Dict[str, str], int]:
    """The validated header of a safetensors file: (tensor entries, __metadata__, data start offset)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path}: too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise SafetensorsError(f"{path}: header length {n} is impossible for a {size}-byte file (not safetensors?)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    data_len = size - data_start
    spans = []
    for name, e in header.items():
        if not isinstance(e, dict) or "dtype" not in e or "shape" not in e or "data_offsets" not in e:
            raise SafetensorsError(f"{path}: entry {name!r} lacks dtype/shape/data_offsets")
        dt = e["dtype"]
        if dt not in ITEMSIZE:
            raise SafetensorsError(f"{path}: tensor {name} has unsupported dtype {dt}")
        b, end = e["data_offsets"]
        numel = 1
        for s in e["shape"]:
            if not isinstance(s, int) or s < 0:
                raise SafetensorsError(f"{path}: tensor {name} has a bad shape {e['shape']}")
            numel *= s
        if end - b != numel * ITEMSIZE[dt] or b < 0 or end > data_len:
            raise SafetensorsError(f"{path}: tensor {name}: offsets [{b}, {end}] do not fit its shape/dtype or the file")
        spans.append((b, end, name))
    spans.sort()
    pos = 0
    for b, end, name in spans:
        if b != pos:
            raise SafetensorsError(f"{path}: tensor {name} does not start where the previous one ended (overlap or gap)")
        pos = end
    if pos != data_len:
        raise SafetensorsError(f"{path}: {data_len - pos} trailing bytes after the last tensor")
    return header, meta, data_start


def read_safetensors(path: str, names: Optional[Iterable[str]] = None, device: str = "cpu") -> Dict[str, torch.Tensor]:
    """Read tensors (all, or the named ones) into owned torch tensors of their stored dtype."""
    header, _meta, start = read_header(path)
    want = list(header.keys()) if names is None else list(names)
    out: Dict[str, torch.Tensor] = {}
    with open(path, "rb") as f:
        for name in want:
            e = header.get(name)
            if e is None:
                raise SafetensorsError(f"{path}: no tensor named {name}")
            b, end = e["data_offsets"]
            f.seek(start + b)
            buf = bytearray(f.read(end - b))
            dt = DTYPES[e["dtype"]]
            if len(buf) == 0:
                t = torch.empty(e["shape"], dtype=dt)
            else:
                t = torch.frombuffer(buf, dtype=dt).reshape(e["shape"])
            out[name] = t.to(device) if device != "cpu" else t
    return out


def _bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path: str, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> None:
    """Write tensors (in their own dtype; names in the given order) atomically (temp file + rename)."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, t in tensors.items():
        if t.dtype not in NAMES:
            raise SafetensorsError(f"tensor {name}: dtype {t.dtype} cannot be stored")
        b = _bytes(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
