"""Every model family exports to ONNX, TorchScript and torch.export (.pt2), and the files agree with eager.

``test_family_exports`` runs one small variant per family (python module of ``kanzoo.models``): a few
blocks at 1/8 width, at a small input. A family without a recipe below falls back to its first registered
model at the contract tests' size and width, so a new family is covered as soon as it is registered.
ONNX and TorchScript are exported as users get them (dynamic height/width where the model verifies at a
second size); the .pt2 program here has a fixed height/width, because torch.export's symbolic reasoning
about dynamic spatial sizes costs up to 20 s per model (``tests/test_export.py`` covers dynamic .pt2 and its
fallback on small models, and ``test_published_architectures`` at full size).
``test_published_architectures`` exports the three architectures with published weights at their default
size and width (random weights: the check is the export, not the weights).

Besides the exporter's own verification, every test re-runs each written file in its own runtime on a fresh
input and compares with eager itself.
"""
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pytest
import torch
from timm.models._registry import _model_to_module

import kanzoo
from kanzoo.export import export_model, onnx_session, read_metadata, to_pt2
from kanzoo.models._base import FlattenClassifierHead

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is deprecated.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _prune(model: torch.nn.Module) -> torch.nn.Module:
    """S-ConvKAN: select and prune the bases (an unpruned model is refused by the exporters)."""
    from kanzoo.layers.selectable import prune_model, select_model

    select_model(model, top_k=1)
    return prune_model(model)


#: module -> (model name, model kwargs, input size (C, H, W), optional post-build step)
Recipe = Tuple[str, Dict[str, Any], Tuple[int, int, int], Optional[Callable[[torch.nn.Module], torch.nn.Module]]]
RECIPES: Dict[str, Recipe] = {
    "simple_conv": ("simple_conv_kagn", dict(width_scale=0.125), (3, 32, 32), None),
    "vgg_kan": ("vgg_kagn_bn11_v4", dict(width_scale=0.125), (3, 64, 64), None),
    # the MoE variant: data-dependent routing is the hard case (exported with dense routing)
    "resnet_kan": ("resnet_kagn_moe18", dict(width_scale=0.125, layers=(1, 1, 1, 1),
                                             moe_kwargs=dict(num_experts=2, top_k=1)), (3, 32, 32), None),
    "densenet_kan": ("densenet_kagn121", dict(width_scale=0.125, block_config=(1, 1)), (3, 32, 32), None),
    # three RSU stages, the last one dilated, as the paper's tables end
    "u2kanet": ("u2kanet_kagn_small", dict(encoder_cfg=((4, 4, 8, False), (3, 4, 8, False), (3, 4, 8, True)),
                                           decoder_cfg=((3, 4, 8, False), (4, 4, 8, False))), (3, 32, 32), None),
    "ukanet": ("ukanet_kagn18", dict(width_scale=0.125, depths=(1, 1), widths=(32, 64)), (3, 32, 32), None),
    "s_convkan": ("s_convkan_tiny", dict(width_scale=0.5), (1, 28, 28), _prune),
    # ViTs: fixed 224 input (dynamic batch only); one block
    "kat": ("kat_tiny_patch16_224", dict(width_scale=0.25, depth=1), (3, 224, 224), None),
    "mlp_kan": ("mlp_kan_tiny_patch16_224", dict(width_scale=0.25, depth=1), (3, 224, 224), None),
    "vision_kan": ("vision_kan_tiny_patch16_224", dict(width_scale=0.25, depth=1), (3, 224, 224), None),
    "ukan": ("ukan_small", dict(width_scale=0.125, kan_kwargs=dict(spline_order=1)), (3, 64, 64), None),
}

MODULES = sorted({_model_to_module[n] for n in kanzoo.list_models()})


def _fallback(module: str) -> Recipe:
    """A new family: its first model at 1/8 width and the smallest size its cfg allows (>= 32, 2x2 features)."""
    name = next(n for n in kanzoo.list_models() if _model_to_module[n] == module)
    cfg = kanzoo.create_model(name, device="meta", width_scale=0.125).pretrained_cfg
    c, h, w = cfg["input_size"]
    if not cfg.get("fixed_input_size"):
        pool = cfg.get("pool_size") or (h, w)
        r = max(1, h // pool[0])
        side = max(32, (cfg.get("min_input_size") or (c, 1, 1))[1], 2 * r)
        h = w = r * math.ceil(side / r)
    return name, dict(width_scale=0.125), (c, h, w), None


def _build(module: str):
    name, kwargs, size, post = RECIPES.get(module) or _fallback(module)
    torch.manual_seed(0)
    model = kanzoo.create_model(name, **kwargs)
    if post is not None:
        model = post(model)
    return name, model.eval(), size


def _independent_check(reports, model: torch.nn.Module, size, seed: int = 5, batch: int = 3) -> None:
    """Each written file, run in its own runtime on a fresh batch, against eager (tolerance 1e-4 x scale)."""
    x = torch.randn(batch, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x).numpy()
    tol = 1e-4 * float(np.abs(ref).max())
    for r in reports:
        if r.format == "onnx":
            out = onnx_session(r.path).run(None, {"input": x.numpy()})[0]
        elif r.format == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = torch.jit.load(r.path)(x).detach().numpy()
        elif r.format == "pt2":
            with torch.no_grad():
                out = torch.export.load(r.path).module()(x).numpy()
        else:
            continue
        assert out.shape == ref.shape, f"{r.format}: output {out.shape}, eager {ref.shape}"
        err = float(np.abs(out - ref).max())
        assert err <= tol, f"{r.format} {r.path}: max |diff| {err:.3e} > {tol:.3e} at batch {batch}"


def test_every_family_has_a_recipe_or_fallback():
    """The family list comes from the registry; families added later are exported through the fallback."""
    assert len(MODULES) >= 5
    for module in MODULES:
        name, _, size, _ = RECIPES.get(module) or _fallback(module)
        assert _model_to_module[name] == module and len(size) == 3


@pytest.mark.parametrize("module", MODULES)
def test_family_exports(module, tmp_path):
    name, model, size = _build(module)
    reports = export_model(model, tmp_path, formats=["onnx", "torchscript"], input_size=size, verbose=False)
    reports.append(to_pt2(model, tmp_path / f"{name}.pt2", input_size=size, dynamic_spatial=False, verbose=False))
    by_format = {r.format: r for r in reports}
    assert sorted(by_format) == ["onnx", "pt2", "torchscript"]
    for r in reports:
        assert Path(r.path).is_file() and Path(r.path).parent == tmp_path
        assert r.passed and r.max_abs_diff <= 1e-4 * r.output_scale, r.summary()
        assert "batch" in r.dynamic_dims, r.summary()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(r.path).name for r in reports), \
        "staging files left behind"
    meta = read_metadata(by_format["onnx"].path)
    assert meta["architecture"].split(".")[0] == name and meta["input_size"] == list(size)
    _independent_check(reports, model, size)


#: the published VGGs' three layer layouts: plain Gram KAN convs (vgg_kagn11_v2 has the same ones, narrower),
#: bottleneck ones, and bottleneck ones with the self-attention block
PUBLISHED = ["vgg_kagn11_v4", "vgg_kagn_bn11_v4", "vgg_kagn_bn11sa_v4"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_published_architectures(name, tmp_path):
    """The published architectures at their default size (3, 224, 224) and width, every format."""
    assert kanzoo.list_pretrained(f"{name}.*"), f"{name} is no longer a published architecture"
    torch.manual_seed(0)
    model = kanzoo.create_model(name).eval()
    reports = export_model(model, tmp_path, formats="all", verbose=False)
    assert sorted(r.format for r in reports) == ["onnx", "pt2", "torchscript"]
    for r in reports:
        assert r.passed, r.summary()
        assert r.inputs[0] == (2, 3, 224, 224)
        assert r.dynamic_dims == ["batch", "height", "width"], r.summary()
    meta = read_metadata(next(r.path for r in reports if r.format == "onnx"))
    assert meta["labels"][0].startswith("tench") and len(meta["labels"]) == 1000
    _independent_check([r for r in reports if r.format == "onnx"], model, (3, 224, 224), batch=1)



def test_flatten_head_exports(tmp_path):
    """The flatten head of vgg_kagn_bn11_v4_opt (average pool to 3×3, flatten, linear) exports to ONNX with a
    dynamic height and width, bins that overlap (2×2 -> 3×3) or do not divide (7×7 -> 3×3) included: ONNX has no
    adaptive pooling for those, so the head computes the bins as matrix products
    (kanzoo.models._base.AdaptiveAvgPool2dMatmul). The head alone: exporting the whole model costs ~10 s more."""
    torch.manual_seed(0)
    head = FlattenClassifierHead(8, 5, (3, 3)).eval()
    path = tmp_path / "head.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(head, (torch.randn(2, 8, 2, 2),), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}})
    session = onnx_session(str(path))
    for shape in ((2, 8, 2, 2), (1, 8, 7, 7), (3, 8, 5, 4)):
        x = torch.randn(shape)
        with torch.no_grad():
            ref = head(x).numpy()
        out = session.run(None, {"input": x.numpy()})[0]
        assert out.shape == ref.shape and float(np.abs(out - ref).max()) <= 1e-5, shape
