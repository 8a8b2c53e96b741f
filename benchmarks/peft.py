"""Basis adapters vs full finetuning vs head-only training, on real handwritten digits.

Data: scikit-learn's digits (1,797 8×8 scans of handwritten digits, UCI), upscaled to 16×16 (bilinear),
scaled to [0, 1] and standardised with the source training set's mean and std. The split is fixed
before any run: digits 0-4 are the source task, digits 5-9 the target task (labels 0-4); each task is
split 70/30 into train/test, stratified, with ``random_state=0``.

A small zoo KAN CNN (``simple_conv_kagn``, width_scale 0.25: four Gram KAN convs of degree 3 with
BatchNorm, 1 input channel) is pretrained once on the source task. It is then adapted to the target task
in three ways, each with a new 5-class head and the same schedule (Adam, batch 64, ``--epochs`` epochs,
learning rate decayed to 0 by a cosine, no augmentation, no early stopping, the last epoch is evaluated):

  (a) full finetuning: every parameter, BatchNorm in train mode (lr 2e-3);
  (b) head only: the new linear head, backbone frozen in eval mode (lr 1e-2);
  (c) basis adapters: ``BasisAdapterConfig(trainable_degrees='all', extra_degrees=1, rank=2,
      train_norm=True, num_classes=5)``: a rank-2 delta on every degree's coefficients, one new degree,
      the norms and the new head (lr 1e-2).
  (c') the same adapters with frozen norms (``train_norm=False``), for reference.

The learning rates are fixed a priori (LoRA-style adapters and linear probes usually take a larger rate
than full finetuning); nothing was tuned on the test split. Reported per way: trainable fraction
(trainable / all parameters of the trained model, as peft prints it), target test accuracy (mean ± std
over seeds 0, 1, 2), adaptation wall time (mean per run) and training memory. Training memory is counted,
not sampled (CPU has no allocator statistics): parameters + gradients + Adam state of the trainable
parameters + the bytes autograd saves for backward in one batch of 64 (shared storages counted once).
For (c) the merged model's predictions are checked to equal the adapted model's.

    python benchmarks/peft.py                 # ~3-4 minutes on 2 CPU threads
    python benchmarks/peft.py --epochs 5      # quicker, less converged
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import kanzoo  # noqa: E402
from kanzoo.peft import BasisAdapterConfig, get_peft_model  # noqa: E402

Tensors = Tuple[torch.Tensor, torch.Tensor]


def load_tasks(size: int) -> Tuple[Tensors, Tensors, Tensors, Tensors]:
    """(source train, source test, target train, target test), images (N, 1, size, size), labels 0-4."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(digits.target)
    splits = []
    for lo in (0, 5):
        idx = ((y >= lo) & (y < lo + 5)).nonzero().flatten().numpy()
        tr, te = train_test_split(idx, test_size=0.3, stratify=y[idx].numpy(), random_state=0)
        splits += [(x[tr], y[tr] - lo), (x[te], y[te] - lo)]
    mean, std = splits[0][0].mean(), splits[0][0].std()
    return tuple((xs.sub(mean).div(std), ys) for xs, ys in splits)


def train(model: nn.Module, data: Tensors, epochs: int, lr: float, seed: int, batch: int = 64) -> float:
    """Adam on the parameters that require grad, learning rate decayed to 0 by a cosine; returns wall seconds."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    x, y = data
    steps = epochs * -(-len(x) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(batch):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            schedule.step()
    return time.perf_counter() - start


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(part).argmax(1) for part in x.split(256)])


def accuracy(model: nn.Module, data: Tensors) -> float:
    return 100.0 * (predict(model, data[0]) == data[1]).float().mean().item()


def train_memory_bytes(model: nn.Module, data: Tensors, batch: int = 64) -> int:
    """Parameters + (gradient + 2 Adam moments) per trainable parameter + tensors saved for backward."""
    params = list(model.parameters())
    total = sum(p.numel() * p.element_size() for p in params)
    total += 3 * sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    seen: Dict[Tuple[int, int], int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(data[0][:batch]), data[1][:batch])
    loss.backward()
    model.zero_grad(set_to_none=True)
    return total + sum(seen.values())


def new_model(state: Dict[str, torch.Tensor]) -> nn.Module:
    model = kanzoo.create_model("simple_conv_kagn", in_chans=1, num_classes=5, width_scale=0.25)
    model.load_state_dict(state)
    return model


def way_full(state, seed):
    torch.manual_seed(seed)
    model = new_model(state)
    model.reset_classifier(5)
    return model, model, 2e-3


class _FrozenBackbone(nn.Module):
    """Head-only training: the backbone stays in eval mode (BatchNorm statistics fixed)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        self.model.get_classifier().train(mode)
        return self

    def forward(self, x):
        return self.model(x)


def way_head(state, seed):
    torch.manual_seed(seed)
    model = new_model(state)
    model.reset_classifier(5)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.get_classifier().parameters():
        p.requires_grad_(True)
    return _FrozenBackbone(model), model, 1e-2


def _way_adapter(train_norm: bool):
    def way(state, seed):
        torch.manual_seed(seed)
        model = new_model(state)
        cfg = BasisAdapterConfig(trainable_degrees="all", extra_degrees=1, rank=2, train_norm=train_norm,
                                 num_classes=5)
        peft_model = get_peft_model(model, cfg)
        return peft_model, peft_model, 1e-2
    return way


WAYS: Dict[str, Callable] = {
    "(a) full finetune": way_full,
    "(b) head only": way_head,
    "(c) basis adapters": _way_adapter(True),
    "(c') adapters, frozen norms": _way_adapter(False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="adaptation epochs (default 20)")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--size", type=int, default=16, help="upscaled image side (default 16)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    src_tr, src_te, tgt_tr, tgt_te = load_tasks(args.size)

    torch.manual_seed(0)
    base = kanzoo.create_model("simple_conv_kagn", in_chans=1, num_classes=5, width_scale=0.25)
    t = train(base, src_tr, args.pretrain_epochs, 2e-3, seed=0)
    print(f"pretrained simple_conv_kagn (width_scale 0.25, {sum(p.numel() for p in base.parameters()):,d} params) "
          f"on digits 0-4 ({len(src_tr[0])} train images, {args.size}x{args.size}) in {t:.1f}s: "
          f"source test accuracy {accuracy(base, src_te):.1f}% ({len(src_te[0])} images)")
    state = {k: v.clone() for k, v in base.state_dict().items()}

    rows: List[Tuple[str, str, str, str, str]] = []
    for name, way in WAYS.items():
        accs, times = [], []
        for seed in range(args.seeds):
            trained, counted, lr = way(state, seed)
            trainable = sum(p.numel() for p in counted.parameters() if p.requires_grad)
            total = sum(p.numel() for p in counted.parameters())
            if seed == 0:   # on a copy, so the measuring step does not touch BatchNorm statistics
                memory = train_memory_bytes(copy.deepcopy(trained), tgt_tr)
            times.append(train(trained, tgt_tr, args.epochs, lr, seed=seed))
            accs.append(accuracy(trained, tgt_te))
            if hasattr(trained, "merge_and_unload"):
                before = predict(trained, tgt_te[0])
                merged = trained.merge_and_unload()
                assert torch.equal(predict(merged, tgt_te[0]), before), "merged model predicts differently"
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        rows.append((name, f"{100.0 * trainable / total:.2f}% ({trainable:,d} / {total:,d})",
                     f"{statistics.mean(accs):.1f} ± {std:.1f}", f"{statistics.mean(times):.1f}",
                     f"{memory / 2 ** 20:.1f}"))
        print(f"{name}: accuracies {[round(a, 1) for a in accs]}", flush=True)

    load = ", 1-min load average {:.1f} at the end (times are wall clock)".format(os.getloadavg()[0]) \
        if hasattr(os, "getloadavg") else ""
    print(f"\ntarget: digits 5-9, {len(tgt_tr[0])} train / {len(tgt_te[0])} test images, {args.epochs} epochs, "
          f"{args.seeds} seeds, {args.threads} CPU threads, torch {torch.__version__}{load}\n")
    header = ("way", "trainable", "target test acc. %", "train s", "train memory MiB")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\ncommand: python benchmarks/peft.py --epochs {args.epochs} --pretrain-epochs {args.pretrain_epochs} "
          f"--size {args.size} --seeds {args.seeds} --threads {args.threads}")


if __name__ == "__main__":
    main()
