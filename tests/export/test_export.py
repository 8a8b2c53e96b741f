"""kanzoo.export: verification, errors, metadata, the standalone runtimes, int8, checkpoints and the command.

Most tests use ``simple_conv_kagn`` at 1/8 width on 32×32 inputs (a few hundred kB of weights); the
per-family exports are in ``test_export_models.py``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import kanzoo
from kanzoo.cli import main
from kanzoo.export import (
    DenseRoutedMoE,
    ExportVerificationError,
    build_model,
    default_opset,
    export_model,
    make_moe_exportable,
    onnx_session,
    read_metadata,
    supported_opsets,
    to_onnx,
    to_pt2,
    to_torchscript,
)
from kanzoo.export.torchscript import load_torchscript_metadata
from tests.support import REPO

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is deprecated.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

PREDICT = REPO / "export" / "predict_onnx.py"


def tiny(num_classes: int = 10, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return kanzoo.create_model("simple_conv_kagn", width_scale=0.125, num_classes=num_classes, **kwargs).eval()


def files_in(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def load_script_module():
    """export/predict_onnx.py as a module (it is a standalone script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("predict_onnx", PREDICT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_images(folder: Path, sizes, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        shape = (h, w, 3) if mode == "RGB" else (h, w)
        # smooth-ish images (random blobs), not pure noise
        base = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8)) + shape[2:], dtype=np.uint8)
        img = Image.fromarray(base, mode=mode).resize((w, h), Image.BILINEAR)
        p = folder / f"img{i}.png"
        img.save(p)
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------------------------ ONNX
def test_onnx_export_verified_and_dynamic(tmp_path):
    model = tiny()
    report = to_onnx(model, tmp_path / "m.onnx", verbose=False)
    assert report.passed and report.tolerance == pytest.approx(1e-4 * report.output_scale)
    assert report.dynamic_dims == ["batch", "height", "width"]
    assert report.inputs == [(2, 3, 32, 32), (1, 3, 32, 32), (1, 3, 41, 51)]
    assert report.extra["opset"] == default_opset() == supported_opsets()[-1]
    assert files_in(tmp_path) == ["m.onnx"]
    import onnx

    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert {o.domain: o.version for o in proto.opset_import}[""] == default_opset()
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    # independent of the exporter's own check: a new batch of 5 at another size
    x = torch.randn(5, 3, 48, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x).numpy()
    out = onnx_session(tmp_path / "m.onnx").run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_onnx_opset_choice_and_errors(tmp_path):
    model = tiny()
    report = to_onnx(model, tmp_path / "m13.onnx", opset=13, dynamic_spatial=False, verbose=False)
    assert report.extra["opset"] == 13 and report.dynamic_dims == ["batch"]
    assert read_metadata(tmp_path / "m13.onnx")["batch_size"] is None
    for bad in (7, 12, supported_opsets()[-1] + 1, 99, "17", 17.0, True):
        with pytest.raises(ValueError, match=r"unsupported ONNX opset .*kanzoo exports opsets 13\.\."):
            to_onnx(model, tmp_path / "bad.onnx", opset=bad, verbose=False)
    assert files_in(tmp_path) == ["m13.onnx"]


def test_fixed_batch_and_size(tmp_path):
    model = tiny()
    report = to_onnx(model, tmp_path / "m.onnx", dynamic_batch=False, dynamic_spatial=False, verbose=False)
    assert report.dynamic_dims == [] and report.inputs == [(1, 3, 32, 32)]
    meta = read_metadata(tmp_path / "m.onnx")
    assert meta["batch_size"] == 1 and meta["dynamic_dims"] == []
    paths = random_images(tmp_path / "imgs", [(40, 40), (50, 30), (32, 32)])
    script = load_script_module()
    session, meta = script.load_model(str(tmp_path / "m.onnx"))
    assert len(script.predict(session, meta, [str(p) for p in paths], batch_size=8)) == 3   # one image at a time
    with pytest.raises(ValueError, match="batch_size must be >= 2 with a dynamic batch"):
        to_onnx(model, tmp_path / "b.onnx", batch_size=1, verbose=False)


def test_onnx_metadata(tmp_path):
    model = tiny(num_classes=3)
    to_onnx(model, tmp_path / "m.onnx", label_names=["cat", "dog", "owl"], verbose=False)
    meta = read_metadata(tmp_path / "m.onnx")
    cfg = model.pretrained_cfg
    assert meta["architecture"] == "simple_conv_kagn" and meta["task"] == "classification"
    assert meta["labels"] == ["cat", "dog", "owl"] and meta["num_classes"] == 3
    assert meta["input_name"] == "input" and meta["output_name"] == "logits"
    pre = meta["preprocess"]
    assert pre["input_size"] == [3, 32, 32] and pre["crop_pct"] == cfg["crop_pct"] == 1.0
    assert pre["interpolation"] == cfg["interpolation"] and pre["image_mode"] == "RGB"
    np.testing.assert_allclose(pre["mean"], cfg["mean"]) and np.testing.assert_allclose(pre["std"], cfg["std"])
    with pytest.raises(ValueError, match="label_names has 2 entries but the model outputs 3 classes"):
        to_onnx(model, tmp_path / "bad.onnx", label_names=["a", "b"], verbose=False)
    with pytest.raises(ValueError, match="mean has 3 values .* 1-channel"):
        to_onnx(tiny(in_chans=1), tmp_path / "bad.onnx", verbose=False)
    assert files_in(tmp_path) == ["m.onnx"]


def test_imagenet_labels_for_1000_classes(tmp_path):
    to_onnx(tiny(num_classes=1000), tmp_path / "m.onnx", dynamic_spatial=False, verbose=False)
    labels = read_metadata(tmp_path / "m.onnx")["labels"]
    assert len(labels) == 1000 and labels[0].startswith("tench") and labels[1].startswith("goldfish")


# ------------------------------------------------------------------------------------------------ errors
class Saboteur(nn.Module):
    """Doubles its output when traced, scripted or exported, so that every export disagrees with eager."""

    def __init__(self, targets=("trace", "script", "export")):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.targets = list(targets)
        self.pretrained_cfg = {"input_size": (3, 16, 16), "mean": (0.5,) * 3, "std": (0.5,) * 3,
                               "interpolation": "bilinear", "crop_pct": 1.0, "architecture": "saboteur"}

    @torch.jit.unused
    def _sabotaged(self) -> bool:
        return (("trace" in self.targets and torch.jit.is_tracing())
                or ("export" in self.targets and torch.compiler.is_exporting()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean((2, 3))
        if torch.jit.is_scripting():
            return y * 2.0 if "script" in self.targets else y
        if self._sabotaged():
            return y * 2.0
        return y


@pytest.mark.parametrize("fmt", ["onnx", "torchscript-script", "torchscript-trace", "pt2"])
def test_disagreeing_export_fails_and_writes_nothing(fmt, tmp_path):
    model = Saboteur().eval()
    path = tmp_path / "m.bin"
    with pytest.raises(ExportVerificationError, match=r"exceeds the tolerance .*nothing was written"):
        if fmt == "onnx":
            to_onnx(model, path, verbose=False)
        elif fmt == "pt2":
            to_pt2(model, path.with_suffix(".pt2"), verbose=False)
        else:
            to_torchscript(model, path, method=fmt.split("-")[1], verbose=False)
    assert files_in(tmp_path) == []


def test_export_model_is_all_or_nothing(tmp_path):
    """ONNX and TorchScript verify, .pt2 does not: nothing at all is written."""
    model = Saboteur(targets=("export",)).eval()
    out = tmp_path / "out"
    with pytest.raises(ExportVerificationError, match="pt2"):
        export_model(model, out, formats="all", verbose=False)
    assert not out.exists(), "the folder export_model created is removed again"
    out.mkdir()
    with pytest.raises(ExportVerificationError, match="pt2"):
        export_model(model, out, formats="all", verbose=False)
    assert files_in(out) == []
    reports = export_model(model, out, formats=["onnx", "torchscript"], stem="ok", verbose=False)
    assert [r.format for r in reports] == ["onnx", "torchscript"] and files_in(out) == ["ok.onnx", "ok.torchscript.pt"]


def test_input_size_errors(tmp_path):
    vgg = kanzoo.create_model("vgg_kagn11_v4", width_scale=0.125).eval()   # 5 max-pools: min 64x64
    for fn in (to_onnx, to_torchscript, to_pt2):
        with pytest.raises(ValueError, match=r"input size 32x32 is too small for vgg_kagn11_v4: its min_input_size is "
                                             r"64x64 .*use input_size=\(3, 64, 64\)"):
            fn(vgg, tmp_path / "m.pt2", input_size=32, verbose=False)
    resnet = kanzoo.create_model("resnet_kagn18", width_scale=0.125, layers=(1, 1, 1, 1)).eval()
    with pytest.raises(ValueError, match="too small for resnet_kagn18: it downsamples by 32"):
        to_onnx(resnet, tmp_path / "m.onnx", input_size=(3, 16, 16), verbose=False)
    model = tiny()
    with pytest.raises(ValueError, match=r"input_size \(1, 32, 32\) has 1 channels but simple_conv_kagn takes "
                                         r"in_chans=3"):
        to_onnx(model, tmp_path / "m.onnx", input_size=(1, 32, 32), verbose=False)
    for bad in ((32,), (3, 0, 32), "32", (3, 32.5, 32)):
        with pytest.raises(ValueError, match="input_size must be"):
            to_onnx(model, tmp_path / "m.onnx", input_size=bad, verbose=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        to_onnx(model, tmp_path / "missing" / "m.onnx", verbose=False)
    assert files_in(tmp_path) == []


def test_fixed_size_model_keeps_its_size(tmp_path):
    kat = kanzoo.create_model("kat_tiny_patch16_224", width_scale=0.25, depth=1).eval()
    with pytest.raises(ValueError, match=r"takes only \(224, 224\) inputs"):
        to_onnx(kat, tmp_path / "m.onnx", input_size=256, verbose=False)
    with pytest.raises(ValueError, match="fixed input size"):
        to_pt2(kat, tmp_path / "m.pt2", dynamic_spatial=True, verbose=False)


def test_training_mode_warns_exports_eval_and_restores(tmp_path):
    model = tiny(drop_rate=0.5).train()
    model.stages[0].norm.eval()   # a submodule the caller froze stays frozen
    with pytest.warns(UserWarning, match="is in training mode; exporting it in eval mode"):
        report = to_onnx(model, tmp_path / "m.onnx", verbose=False)
    assert model.training and not model.stages[0].norm.training and model.stages[1].training
    assert report.passed   # verified against eval-mode outputs: dropout would have made them random
    x = torch.randn(4, 3, 32, 32)
    out = onnx_session(tmp_path / "m.onnx").run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_bad_models_and_arguments(tmp_path):
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        to_onnx("simple_conv_kagn", tmp_path / "m.onnx", verbose=False)
    with pytest.raises(ValueError, match="float32"):
        to_onnx(tiny().double(), tmp_path / "m.onnx", verbose=False)
    with pytest.raises(ValueError, match="method must be one of"):
        to_torchscript(tiny(), tmp_path / "m.pt", method="compile", verbose=False)
    with pytest.raises(ValueError, match="rtol must be"):
        to_onnx(tiny(), tmp_path / "m.onnx", rtol=0, verbose=False)
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(tiny(), tmp_path, formats=["tflite"], verbose=False)
    from kanzoo.layers.selectable import NotPrunedError

    with pytest.raises(NotPrunedError, match="Prune first"):
        to_onnx(kanzoo.create_model("s_convkan_tiny", width_scale=0.5), tmp_path / "m.onnx", verbose=False)
    assert files_in(tmp_path) == []


def test_unstable_model_failure_is_explained(tmp_path):
    """A model whose output jumps under tiny input changes (like hard top-k routing near a tie) gets an
    explanation instead of a bare mismatch."""

    class Tie(nn.Module):
        def __init__(self):
            super().__init__()
            self.pretrained_cfg = {"input_size": (3, 8, 8), "architecture": "tie"}

        def forward(self, x):
            s = x.mean((1, 2, 3))
            return torch.where(s > 0, 1.0, -1.0)[:, None].expand(-1, 4) * 10.0

    model = Tie().eval()
    x = torch.zeros(2, 3, 8, 8)
    from kanzoo.export._prepare import explain_instability

    assert "unstable" in explain_instability(model, x, 1e-4)
    assert explain_instability(tiny(), torch.randn(2, 3, 32, 32), 1e-4) == ""


# ------------------------------------------------------------------------------------------------ MoE
def test_dense_routing_equals_sparse_dispatch():
    from kanzoo.layers import MoEKANConv2d

    torch.manual_seed(0)
    moe = MoEKANConv2d(4, 6, 3, num_experts=4, top_k=2, padding=1, basis="gram", degree=2).eval()
    x = torch.randn(16, 4, 7, 7) * torch.linspace(0.2, 3, 16).view(-1, 1, 1, 1)
    with torch.no_grad():
        top_idx = moe.gate(x.flatten(2).mean(-1))[0]
        assert len({tuple(sorted(r)) for r in top_idx.tolist()}) > 1, "the batch should route to different experts"
        ref, _ = moe(x)
        dense, aux = DenseRoutedMoE(moe)(x)
    torch.testing.assert_close(dense, ref, rtol=1e-5, atol=1e-6)
    assert aux.item() == 0.0

    model = kanzoo.create_model("resnet_kagn_moe18", width_scale=0.125, layers=(1, 1, 1, 1)).eval()
    copy, n = make_moe_exportable(model)
    assert n == 8 and copy is not model
    assert sum(isinstance(m, DenseRoutedMoE) for m in copy.modules()) == 8
    assert not any(isinstance(m, DenseRoutedMoE) for m in model.modules()), "the caller's model was modified"
    torch.jit.script(DenseRoutedMoE(moe))   # scriptable


# ------------------------------------------------------------------------------------------------ pt2, TorchScript
def test_pt2_dynamic_and_fallback(tmp_path):
    report = to_pt2(tiny(), tmp_path / "m.pt2", verbose=False)
    assert report.dynamic_dims == ["batch", "height", "width"] and report.extra["ranges"]["batch"].startswith("[1,")
    # UKANet pads to a multiple of its stride: its program admits only multiples, so the export falls back
    torch.manual_seed(0)
    unet = kanzoo.create_model("ukanet_kagn18", width_scale=0.125, depths=(1, 1), widths=(32, 64)).eval()
    report = to_pt2(unet, tmp_path / "u.pt2", input_size=16, verbose=False)
    assert report.dynamic_dims == ["batch"] and any("fixed spatial size" in n for n in report.notes)
    meta = kanzoo.export.load_pt2_metadata(tmp_path / "u.pt2")
    assert meta["task"] == "segmentation" and meta["dynamic_dims"] == ["batch"]
    assert files_in(tmp_path) == ["m.pt2", "u.pt2"]


def test_torchscript_methods(tmp_path):
    model = tiny()
    for method in ("script", "trace", "auto"):
        report = to_torchscript(model, tmp_path / f"{method}.pt", method=method, verbose=False)
        assert report.passed and report.extra["method"] == ("script" if method == "auto" else method)
        assert report.dynamic_dims == ["batch", "height", "width"]
    meta = load_torchscript_metadata(tmp_path / "script.pt")
    assert meta["architecture"] == "simple_conv_kagn" and meta["preprocess"]["input_size"] == [3, 32, 32]


# ---------------------------------------------------------------------------------------- runtimes without kanzoo
def _blocked_python(code: str, *args: str, block=("torch", "kanzoo")) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh python where importing each module in ``block`` fails."""
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in block)
    for m in block:
        prelude += f"try:\n    import {m}\n    raise SystemExit('{m} is importable')\nexcept ImportError:\n    pass\n"
    env = dict(os.environ, PYTHONPATH="")
    return subprocess.run([sys.executable, "-c", prelude + code, *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO / "export"), timeout=300)


def test_predict_onnx_runs_without_torch_or_kanzoo(tmp_path):
    model = tiny(num_classes=4, seed=1)
    labels = ["apple", "banana", "cherry", "date"]
    to_onnx(model, tmp_path / "m.onnx", label_names=labels, verbose=False)
    paths = random_images(tmp_path / "imgs", [(40, 50), (64, 32), (32, 32)]) + \
        random_images(tmp_path / "gray", [(45, 45)], mode="L", seed=2)
    code = ("import runpy\nsys.argv = ['predict_onnx.py'] + sys.argv[1:]\n"
            "runpy.run_path('predict_onnx.py', run_name='__main__')\n")
    proc = _blocked_python(code, str(tmp_path / "m.onnx"), *map(str, paths), "--json", "--top-k", "2",
                           block=("torch", "kanzoo", "timm", "torchvision"))
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["image"] for r in results] == [str(p) for p in paths]

    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config(model=model))
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        prob = model(x).softmax(-1).numpy()
    for r, p in zip(results, prob):
        top = [t["index"] for t in r["top"]]
        order = np.argsort(-p)
        for k in (0, 1):   # ranks that float rounding cannot swap
            if p[order[k]] - p[order[k + 1]] > 1e-5:
                assert top[k] == order[k], (r, p)
        assert r["top"][0]["label"] == labels[top[0]]
        assert r["top"][0]["prob"] == pytest.approx(float(p[top[0]]), abs=1e-4)


def test_predict_onnx_preprocessing_matches_timm():
    from timm.data import create_transform, resolve_data_config

    from kanzoo.export import resolve_data_config as kanzoo_data_config

    script = load_script_module()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
              [(300, 400), (517, 233), (224, 224), (100, 90), (31, 45)]]
    images.append(Image.fromarray(rng.integers(0, 256, (77, 120), dtype=np.uint8), mode="L"))
    cases = [("vgg_kagn11_v4", {}, None), ("kat_tiny_patch16_224", {}, None), ("simple_conv_kagn", {}, None),
             ("vgg_kagn11_v4", {"crop_mode": "squash"}, (3, 96, 128)),
             ("vgg_kagn11_v4", {"interpolation": "lanczos", "crop_pct": 0.95}, (3, 96, 128))]
    for name, overrides, size in cases:
        model = kanzoo.create_model(name, device="meta")
        timm_cfg = dict(resolve_data_config(model=model), **overrides)
        if size:
            timm_cfg["input_size"] = size
        transform = create_transform(**timm_cfg)
        cfg = kanzoo_data_config(model, timm_cfg["input_size"], overrides)
        for img in images:
            ours = script.preprocess(img, cfg)
            ref = transform(img.convert("RGB")).numpy()
            assert ours.shape == ref.shape and ours.dtype == np.float32
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5, err_msg=f"{name} {overrides} {img.size}")


def test_predict_onnx_segmentation_masks(tmp_path):
    torch.manual_seed(0)
    model = kanzoo.create_model("ukanet_kagn18", width_scale=0.125, depths=(1, 1), widths=(32, 64)).eval()
    to_onnx(model, tmp_path / "seg.onnx", input_size=32, verbose=False)
    paths = random_images(tmp_path / "imgs", [(48, 40), (32, 32)])
    script = load_script_module()
    session, meta = script.load_model(str(tmp_path / "seg.onnx"))
    assert meta["task"] == "segmentation" and meta["preprocess"]["crop_pct"] == 1.0
    results = script.predict(session, meta, [str(p) for p in paths])
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**dict(resolve_data_config(model=model), input_size=(3, 32, 32)))
    for r, p in zip(results, paths):
        with torch.no_grad():
            logits = model(transform(Image.open(p).convert("RGB")).unsqueeze(0))[0, 0]
        assert r["mask"].shape == (32, 32)
        clear = logits.abs().numpy() > 1e-4   # pixels whose class no rounding difference can flip
        assert clear.mean() > 0.9
        np.testing.assert_array_equal(r["mask"][clear], (logits > 0).numpy().astype(np.int64)[clear])
        assert sum(r["fractions"].values()) == pytest.approx(1.0)


def test_artifacts_load_without_kanzoo(tmp_path):
    model = tiny()
    to_torchscript(model, tmp_path / "m.pt", verbose=False)
    to_pt2(model, tmp_path / "m.pt2", dynamic_spatial=False, verbose=False)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        np.save(tmp_path / "ref.npy", model(x).numpy())
    code = (
        "import numpy as np, torch, json\n"
        "d = sys.argv[1]\n"
        "x = torch.from_numpy(np.load(d + '/x.npy')); ref = np.load(d + '/ref.npy')\n"
        "files = {'kanzoo.json': ''}\n"
        "m = torch.jit.load(d + '/m.pt', _extra_files=files)\n"
        "assert json.loads(files['kanzoo.json'])['architecture'] == 'simple_conv_kagn'\n"
        "with torch.no_grad():\n"
        "    a = m(x).numpy(); b = torch.export.load(d + '/m.pt2').module()(x).numpy()\n"
        "tol = 1e-4 * np.abs(ref).max()\n"
        "print(float(np.abs(a - ref).max()), float(np.abs(b - ref).max()))\n"
        "assert np.abs(a - ref).max() <= tol and np.abs(b - ref).max() <= tol\n"
    )
    proc = _blocked_python(code, str(tmp_path), block=("kanzoo", "timm"))
    assert proc.returncode == 0, proc.stderr[-3000:]


# ------------------------------------------------------------------------------------------------ int8
def _digits(size=16):
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x, torch.tensor(d.target), perm[:1200], perm[1200:]


@pytest.fixture(scope="module")
def digits_model():
    """simple_conv_kagn (width 1/4, 1 channel) trained 3 epochs on scikit-learn's digits at 16×16."""
    import torch.nn.functional as F

    x, y, tr, te = _digits()
    torch.manual_seed(0)
    model = kanzoo.create_model("simple_conv_kagn", in_chans=1, num_classes=10, width_scale=0.25)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        model.train()
        order = tr[torch.randperm(len(tr), generator=torch.Generator().manual_seed(_))]
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval(), x, y, tr, te


def test_quantized_models_are_smaller_and_as_accurate(digits_model, tmp_path):
    model, x, y, tr, te = digits_model
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in tr[:48].tolist():
        Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8), mode="L").save(calib / f"{i}.png")
    data = dict(mean=(0.0,), std=(1.0,), crop_pct=1.0)
    with torch.no_grad():
        float_acc = float((model(x[te]).argmax(1) == y[te]).float().mean())
    assert float_acc > 0.75   # trained (chance is 0.1); the point is the int8 change
    for mode in ("dynamic", "static"):
        report = to_onnx(model, tmp_path / f"{mode}.onnx", input_size=(1, 16, 16), data_config=data, quantize=mode,
                         calibration_dir=calib if mode == "static" else None, verbose=False)
        q = report.quantized
        assert q.format == f"onnx-int8-{mode}" and Path(q.path).name == f"{mode}.int8-{mode}.onnx"
        assert q.size_bytes < 0.5 * report.size_bytes and q.extra["size_ratio"] < 0.5
        if mode == "static":
            assert q.extra["calibration_images"] == 48
        assert read_metadata(q.path)["preprocess"]["input_size"] == [1, 16, 16]
        out = onnx_session(q.path).run(None, {"input": x[te].numpy()})[0]
        q_acc = float((out.argmax(1) == y[te].numpy()).mean())
        assert q_acc >= float_acc - 0.03, f"{mode}: int8 accuracy {q_acc:.3f}, float {float_acc:.3f}"


def test_quantize_argument_errors(tmp_path):
    model = tiny()
    with pytest.raises(ValueError, match=r"quantize must be one of \['dynamic', 'static'\]"):
        to_onnx(model, tmp_path / "m.onnx", quantize="int4", verbose=False)
    with pytest.raises(ValueError, match="needs calibration_dir"):
        to_onnx(model, tmp_path / "m.onnx", quantize="static", verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        to_onnx(model, tmp_path / "m.onnx", quantize="static", calibration_dir=tmp_path / "empty", verbose=False)
    with pytest.raises(ValueError, match="quantize needs the onnx format"):
        export_model(model, tmp_path / "out", formats=["pt2"], quantize="dynamic", verbose=False)
    assert files_in(tmp_path) == ["empty"]


# ------------------------------------------------------------------------------------ checkpoints, adapters, CLI
class NotATensor:
    """Pickled into a checkpoint: torch.load(weights_only=True) must refuse it."""


def test_checkpoint_files_load_safely(tmp_path):
    from safetensors.torch import save_file

    model = kanzoo.create_model("simple_conv_kagn", width_scale=0.125, num_classes=7, in_chans=1).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "w.pth")
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
    for f in ("w.safetensors", "w.pth"):
        loaded = build_model("simple_conv_kagn", checkpoint=tmp_path / f, model_kwargs=dict(width_scale=0.125))
        assert loaded.num_classes == 7 and loaded.in_chans == 1   # read from the checkpoint's head and stem
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), ref)

    torch.save({"weight": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        build_model("simple_conv_kagn", checkpoint=tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"does not fit simple_conv_kagn.*shapes differ "
                                         r".*stages\.0\.basis_weight \(4, 1, 4, 3, 3\) vs \(32, 1, 4, 3, 3\)"):
        build_model("simple_conv_kagn", checkpoint=tmp_path / "w.safetensors")   # full width: shapes differ
    with pytest.raises(FileNotFoundError):
        build_model("simple_conv_kagn", checkpoint=tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="not both"):
        build_model("simple_conv_kagn", pretrained=True, checkpoint=tmp_path / "w.safetensors")


def test_adapter_is_merged_before_export(tmp_path):
    peft = pytest.importorskip("kanzoo.peft")
    from safetensors.torch import save_file

    base = tiny(seed=2)
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(tmp_path / "base.safetensors"))
    peft_model = peft.get_peft_model(base, peft.BasisAdapterConfig(trainable_degrees=[2, 3], extra_degrees=1))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    merged = peft_model.merge_and_unload().eval()
    reports = export_model("simple_conv_kagn", tmp_path / "out", formats="onnx",
                           checkpoint=tmp_path / "base.safetensors", adapter=tmp_path / "adapter",
                           model_kwargs=dict(width_scale=0.125), verbose=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref, plain = merged(x).numpy(), tiny(seed=2)(x).numpy()
    out = onnx_session(reports[0].path).run(None, {"input": x.numpy()})[0]
    assert np.abs(ref - plain).max() > 1e-3, "the adapter should change the model"
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    with pytest.raises(FileNotFoundError, match="adapter folder"):
        build_model("simple_conv_kagn", adapter=tmp_path / "missing")


def _cli(*argv):
    return main(["export", *argv])


def test_command(tmp_path, capsys):
    out = tmp_path / "out"
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit {i}" for i in range(10)))
    rc = _cli("simple_conv_kagn", "--out", str(out), "--format", "onnx", "--format", "torchscript",
              "--model-arg", "width_scale=0.125", "--input-size", "40", "--labels", str(labels),
              "--torchscript-method", "trace")
    printed = capsys.readouterr().out
    assert rc == 0 and files_in(out) == ["simple_conv_kagn.onnx", "simple_conv_kagn.torchscript.pt"]
    assert "onnx: max |onnxruntime" in printed and "tolerance" in printed and "torchscript: max" in printed
    meta = read_metadata(out / "simple_conv_kagn.onnx")
    assert meta["labels"][3] == "digit 3" and meta["input_size"] == [3, 40, 40]

    for argv, message in [
        (["simple_conv_kagm", "--out", str(tmp_path / "x")], "unknown model 'simple_conv_kagm'"),
        (["simple_conv_kagn", "--out", str(tmp_path / "x"), "--opset", "5"], "unsupported ONNX opset 5"),
        (["vgg_kagn11_v4", "--out", str(tmp_path / "x"), "--input-size", "32"], "too small for vgg_kagn11_v4"),
        (["simple_conv_kagn", "--out", str(tmp_path / "x"), "--quantize", "static"], "needs calibration_dir"),
        (["simple_conv_kagn", "--out", str(tmp_path / "x"), "--model-arg", "width"], "KEY=VALUE"),
    ]:
        assert _cli(*argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("kanzoo: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
