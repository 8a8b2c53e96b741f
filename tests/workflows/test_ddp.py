"""``kanzoo train`` under torchrun: 2 CPU processes (gloo) with batch B give the weights of 1 process with batch 2B.

The comparison is valid because every sample's contribution is independent of the others in its batch:

* the model has no BatchNorm (``norm_layer=instance``: per-sample statistics), so splitting a batch across
  processes changes nothing in the forward pass; with BatchNorm each process would normalise over its own half;
* ``--no-aug`` and no dropout: augmentation draws from per-process generators, so it could not match;
* the sampler permutes with ``seed + epoch`` and gives process r the samples r, r+N, ... of the permutation, so
  step k of the 2 processes covers exactly the samples of step k of the single process, and DDP's gradient
  average over the two halves equals the mean over the whole batch.

Gradient accumulation (``--grad-accum-steps 2``: groups of 2 batches, the epoch's last group of 1) and the model
EMA are the same computation on both sides too, so they are on in the comparison. Mixup is not (each process mixes
its own half of the batch with its own draws): a second 2-process run has mixup, cutmix, EMA and accumulation on and
checks that the processes take the same steps and rank 0 alone reports them.

What remains is float32 rounding (a different summation order), which AdamW's normalisation amplifies for
coefficients whose gradient is near zero; hence a relative tolerance, checked against a run with another global
batch that must differ far more.
"""
import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from kanzoo.cli import main
from tests.support import REPO
from tests.support.kan_layer_cases import single_thread
from tests.support.workflow_data import make_imagefolder

NAME = "simple_conv_kagn"

# tiny tensors: intra-op threads only add synchronisation (and stall on busy shared cores)
_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)
COMMON = ["--epochs", "2", "--no-aug", "--model-kwargs", "width_scale=0.25", "norm_layer=instance",
          "--img-size", "16", "-j", "0", "--no-progress", "--log-interval", "1", "--grad-accum-steps", "2",
          "--model-ema", "--model-ema-decay", "0.5"]


def _epochs(run_dir):
    recs = [json.loads(l) for l in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in recs if r["kind"] == "epoch"], [r for r in recs if r["kind"] == "step"]


def _dist(a, b):
    return sum(((a[k] - b[k]).double() ** 2).sum() for k in a).sqrt().item()


def _torchrun(tmp_path, *argv):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "kanzoo", "train", *map(str, argv), "--device", "cpu"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = tmp_path_factory.mktemp("ddp") / "data"
    make_imagefolder(data / "train", per_class=8)
    make_imagefolder(data / "val", per_class=2, seed=1)
    return data


def test_two_processes_match_one_with_the_same_global_batch(data, tmp_path):
    args = [NAME, "--data", str(data), *COMMON]
    two = tmp_path / "two"
    r = _torchrun(tmp_path, *args, "-b", "4", "-o", two)

    one, other = tmp_path / "one", tmp_path / "other"
    assert main(["train", *args, "-b", "8", "-q", "-o", str(one)]) == 0
    assert main(["train", *args, "-b", "4", "-q", "-o", str(other)]) == 0  # another global batch

    # rank 0 alone printed, logged and wrote the run folder
    out = r.stdout
    assert out.count("epoch 1/2 ") == 1 and out.count("epoch 2/2 ") == 1 and out.count("run folder:") == 1
    assert "2 steps/epoch of 4 x 2 process(es) x 2 accumulated on cpu (gloo)" in out
    e2, s2 = _epochs(two)
    e1, s1 = _epochs(one)
    # 3 batches an epoch: updates after batches 2 and 3
    assert [r["epoch"] for r in e2] == [1, 2] and [r["step"] for r in s2] == list(range(1, 5))
    assert {p.name for p in two.iterdir()} >= {"model.safetensors", "config.json", "checkpoint.pth", "log.jsonl"}

    # the same samples, the same metrics
    for a, b in zip(e1, e2):
        assert a["train_images"] == b["train_images"] == 24 and a["val_images"] == b["val_images"] == 6
        for key in ("train_loss", "val_loss", "ema_val_loss"):
            assert abs(a[key] - b[key]) < 1e-5 * abs(a[key]), (key, a[key], b[key])
        assert a["train_top1"] == b["train_top1"] and a["val_top1"] == b["val_top1"]
        assert a["ema_val_images"] == b["ema_val_images"] == 6
    for a, b in zip(s1, s2):
        assert abs(a["loss"] - b["loss"]) < 1e-5 * abs(a["loss"]) and a["lr"] == b["lr"]

    # the same weights, to rounding
    for name in ("model.safetensors", "model_ema.safetensors"):
        w1, w2, w3 = (load_file(str(d / name)) for d in (one, two, other))
        assert w1.keys() == w2.keys()
        d12, d13 = _dist(w1, w2), _dist(w1, w3)
        assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 2e-3, name
        assert d12 < d13 / 10, (name, d12, d13)


def test_two_processes_with_mixup_cutmix_ema_and_accumulation(data, tmp_path):
    run_dir = tmp_path / "mix"
    r = _torchrun(tmp_path, NAME, "--data", data, *COMMON, "--mixup", "0.8", "--cutmix", "1.0", "-b", "4",
                  "--epochs", "1", "-o", run_dir)
    out = r.stdout
    assert out.count("training with: mixup 0.8 / cutmix 1.0") == 1 and "global batch 16" in out
    assert out.count("epoch 1/1 ") == 1 and "EMA val loss" in out
    epochs, steps = _epochs(run_dir)
    assert [e["step"] for e in epochs] == [2] and len(steps) == 2
    assert all(e["train_images"] == 24 and e["val_images"] == e["ema_val_images"] == 6 for e in epochs)
    assert (run_dir / "model_ema.safetensors").is_file()
