"""``kanzoo benchmark NAME``: parameters, GMACs, latency and throughput of one model."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from ..errors import WorkflowError
from ..profile import count_macs
from ._common import check_positive, resolve_device, resolve_dtype
from .loading import load_model


@dataclass
class BenchResult:
    name: str
    params: int
    gmacs: Optional[float]  # per image, at the benchmark size
    batch: int
    size: tuple
    device: str
    dtype: str
    mode: str
    latency_ms: float  # median per batch
    latency_p90_ms: float
    throughput: float  # images / s
    iters: int

    def lines(self):
        gmacs = f"{self.gmacs:.3f}" if self.gmacs is not None else "n/a"
        total = f" ({self.gmacs * self.batch:.3f} per batch)" if self.gmacs is not None else ""
        return [
            f"model       {self.name}",
            f"parameters  {self.params:,} ({self.params / 1e6:.2f} M)",
            f"GMACs       {gmacs} per image at {'x'.join(map(str, self.size))}{total}",
            f"setup       {self.mode}, batch {self.batch}, {self.dtype} on {self.device}, {self.iters} timed runs",
            f"latency     {self.latency_ms:.2f} ms per batch (median; p90 {self.latency_p90_ms:.2f} ms)",
            f"throughput  {self.throughput:,.1f} images/s",
        ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(name: str, batch: int = 1, size: Optional[int] = None, device: Optional[str] = "cpu",
              dtype: str = "float32", iters: int = 20, warmup: int = 5, train: bool = False,
              model_kwargs: Optional[Dict[str, Any]] = None, macs: bool = True) -> BenchResult:
    """Times ``iters`` forward passes (``train``: forward + backward) of a random batch after ``warmup``."""

    check_positive("--batch", batch, hint="time at least one image per batch")
    check_positive("--iters", iters)
    check_positive("--warmup", warmup, minimum=0)
    if size is not None:
        check_positive("--size", size)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    if dt != torch.float32 and dev.type == "cpu" and dt == torch.float16:
        raise WorkflowError("float16 on CPU is not supported by most kernels; use --dtype bfloat16 or float32")
    model = load_model(name, model_kwargs=model_kwargs).model
    c, h, w = model.pretrained_cfg["input_size"]
    if size is not None:
        h = w = size
    params = sum(p.numel() for p in model.parameters())
    gmacs = None
    if macs:
        try:
            gmacs = count_macs(load_model(name, model_kwargs=model_kwargs, device="meta").model, (c, h, w))[0] / 1e9
        except (RuntimeError, NotImplementedError):  # data-dependent ops: count on a real forward
            gmacs = count_macs(model, (c, h, w), device="cpu")[0] / 1e9
    model = model.to(dev, dt).train(train)
    x = torch.randn(batch, c, h, w, device=dev, dtype=dt)

    def step():
        if train:
            model.zero_grad(set_to_none=True)
            model(x).float().sum().backward()
        else:
            with torch.no_grad():
                model(x)

    for _ in range(warmup):
        step()
    _sync(dev)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    p90 = sorted(times)[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return BenchResult(name=name, params=params, gmacs=gmacs, batch=batch, size=(c, h, w), device=str(dev),
                       dtype=str(dt).replace("torch.", ""), mode="forward+backward" if train else "inference",
                       latency_ms=med * 1e3, latency_p90_ms=p90 * 1e3, throughput=batch / med, iters=iters)
