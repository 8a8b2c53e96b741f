"""timm's per-model contract (timm 1.0.31 ``tests/test_models.py``) over every registered kanzoo model.

The model list is ``kanzoo.list_models()`` at collection time, so a new family is covered by registering it.
Every model is built small to fit the CI budget: ``width_scale=WIDTH_SCALE`` (every kanzoo family takes it;
``test_accepts_width_scale`` holds them to it), the reductions of ``SMALL_KWARGS`` (fewer MLP-KAN and KAT
blocks) and the smallest input that the model's cfg allows (about 32²), batch 1 or 2.

What each model must pass, as in timm, with kanzoo's differences marked (*):

=========================  ==========================================================================================
check                      what is asserted
=========================  ==========================================================================================
forward                    batch-1 eval forward: batch dim, finite output; ``set_grad_checkpointing()`` keeps it
backward                   ``num_classes=42``, batch 2, train mode: 42 outputs, finite; every parameter has a grad
unknown_kwarg              an unknown constructor kwarg raises ``TypeError`` naming it
meta_device                ``create_model(device='meta')`` puts every parameter and buffer on ``meta``
bf16                       a forward works after ``.to(torch.bfloat16)`` and gives finite bf16 output
param_groups               ``group_matcher()`` (fine and coarse) splits the parameters into more than one group;
                           ``no_weight_decay()`` names only real parameters
reset_classifier           classifiers: ``reset_classifier(7)`` keeps device, dtype and train mode, and frozen
                           parameters stay frozen
default_cfg                num_features / head_hidden_size / pool_size / reset_classifier / first_conv / classifier,
                           checked for every tag's cfg (*: pool_size is checked at the test size, scaled from the
                           cfg's ``input_size``/``pool_size`` ratio, and every tag must agree with the model's
                           reduction; token models, whose forward_features is (B, N, C), get timm's
                           non-standard-model checks)
in_chans                   ``in_chans=1`` and ``in_chans=4`` build and run
drop_rate                  ``drop_rate=0.5`` is accepted; (*) classifiers: eval output deterministic, train output
                           not
torchscript                ``torch.jit.script`` under ``set_scriptable(True)``, output equal to eager (*: timm
                           checks only shape/NaN)
compile (*)                in ``tests/models/test_models_compile.py``: one small model per family compiles to one graph
                           (``fullgraph=True``, ``aot_eager``) in eval and train, output and gradients equal eager
features_only              ``features_only=True``: one output per ``feature_info`` level, channels and reductions
                           as declared (segmentation models: their encoder stages)
forward_intermediates      classifiers: one intermediate per ``feature_info`` level, channels and reductions as
                           declared, final equal to ``forward_features``, the same with
                           ``set_grad_checkpointing()`` (*: without autograd); (*) an int, and a list with a
                           negative index and ``stop_early``, give the same taps
prune_intermediate_layers  classifiers: ``prune_head=False`` at the last level keeps the output; pruned to ``[0]`` and
                           to ``[0, -2]`` (``prune_norm=True``), ``forward_intermediates`` gives the unpruned taps,
                           ``forward`` (no classifier, no pooling) of a CNN ends at the last tap kept, finite and
                           (``[0]``) deterministic in eval, and a train-mode backward from the taps reaches every
                           parameter (as ``all_params_grad``; ``[0, -2]``: one model per family)
features_getter            classifiers: ``features_only=True, feature_cls='getter'`` outputs equal the unwrapped
                           model's ``forward_intermediates`` at the wrapper's ``out_indices`` (same weights);
                           channels and reductions as its ``feature_info``
segmentation (*)           ``task == 'segmentation'`` models: output ``(B, num_classes, H, W)`` at the input size;
                           the classification-head checks are skipped for them (their encoder contract:
                           ``tests/models/test_segmentation_encoders.py``)
=====================  ========================================================================================

Declared exceptions. A model class may set ``_contract_skip = {check: reason}`` with keys from
``CONTRACT_CHECKS``. Most keys skip that check (the reason is shown by ``pytest -rs``); two change it instead:
``'all_params_grad'`` allows parameters without a gradient (e.g. MoE experts that a batch does not route to)
but still asserts that some have one, and ``'torchscript'`` replaces ``torch.jit.script`` by ``torch.jit.trace``
with the same output check. An unknown key fails ``test_contract_declarations``.
"""
import copy
import fnmatch
import inspect
import math
import warnings
from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
from timm import set_scriptable
from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg
from timm.models._registry import _model_to_module

import kanzoo

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated.*:FutureWarning"),
]

#: what a model class may name in ``_contract_skip`` (see the module docstring)
CONTRACT_CHECKS = {
    "forward": "batch-1 eval forward, finite output",
    "grad_checkpointing": "set_grad_checkpointing() keeps the output",
    "backward": "train-mode backward with num_classes=42",
    "all_params_grad": "every parameter gets a gradient (declared: some may not)",
    "unknown_kwarg": "an unknown kwarg raises TypeError",
    "meta_device": "device='meta' puts every tensor on meta",
    "bf16": "bfloat16 forward",
    "default_cfg": "head API and cfg fields",
    "param_groups": "group_matcher() gives more than one group; no_weight_decay() names real parameters",
    "reset_classifier": "reset_classifier keeps device, dtype, train mode and frozen parameters",
    "in_chans": "in_chans=1 and 4",
    "drop_rate": "drop_rate accepted and applied in train mode only",
    "torchscript": "torch.jit.script (declared: torch.jit.trace instead)",
    "compile": "torch.compile(backend='aot_eager')",
    "features_only": "features_only=True matches feature_info",
    "forward_intermediates": "forward_intermediates matches feature_info and forward_features",
    "prune_intermediate_layers": "pruned models give the unpruned taps",
    "features_getter": "features_only=True, feature_cls='getter' equals forward_intermediates",
    "segmentation": "(B, num_classes, H, W) output",
}

WIDTH_SCALE = 0.125   # every width × 1/8: resnet_*152 and vgg_*19 then build and run in well under a second
#: more size reductions for families whose cost is not in their width (name glob -> build kwargs): MLP-KAN's
#: fixed 224²/384² inputs through 12 mixture-of-experts blocks, KAT's 224² ViTs of 12 blocks; 3 blocks keep
#: features_only's 3 levels
SMALL_KWARGS: Dict[str, Dict[str, Any]] = {"mlp_kan_*": dict(depth=3), "kat_*": dict(depth=3),
                                            "vision_kan_*": dict(depth=3)}
TARGET_SIZE = 32      # test input side, raised to the cfg's min_input_size and to MIN_FEATURE_PX × the reduction
MIN_FEATURE_PX = 2    # unpooled features at least 2×2 (InstanceNorm needs > 1 pixel; timm never tests at 1×1)
RTOL, ATOL = 1e-4, 1e-5

MODELS = kanzoo.list_models()


def _module(name: str) -> str:
    return _model_to_module.get(name, "?")


def _representatives(names: List[str]) -> List[str]:
    """One model per family (python module): a Gram-basis one (the basis with published weights) with the
    fewest modules (the cheapest to compile)."""
    by_module: Dict[str, List[str]] = {}
    for n in names:
        by_module.setdefault(_module(n), []).append(n)
    def key(n: str):
        p = _safe_probe(n)
        return (p is None, "_kagn" not in n, p["num_modules"] if p else 0, n)

    return sorted(min(group, key=key) for group in by_module.values())


# ------------------------------------------------------------------------------------------------ helpers
_PROBES: Dict[str, Dict[str, Any]] = {}


def probe(name: str) -> Dict[str, Any]:
    """Builds ``name`` on the meta device once (nothing is allocated) and records what the tests need:
    the class, whether it takes ``width_scale``, its task, declared skips and cfg."""
    if name not in _PROBES:
        kw: Dict[str, Any] = {"width_scale": WIDTH_SCALE}
        for pattern, extra in SMALL_KWARGS.items():
            if fnmatch.fnmatch(name, pattern):
                kw.update(extra)
        try:
            model = kanzoo.create_model(name, device="meta", **kw)
        except TypeError as e:
            if "width_scale" not in str(e):
                raise
            kw = {}  # fall back to full width; test_accepts_width_scale reports the family
            model = kanzoo.create_model(name, device="meta")
        cls = type(model)
        _PROBES[name] = dict(
            cls=cls, kwargs=kw, cfg=dict(model.pretrained_cfg),
            takes_width_scale="width_scale" in inspect.signature(cls.__init__).parameters,
            task=getattr(model, "task", "classification"),
            skips=dict(getattr(cls, "_contract_skip", None) or {}),
            feature_info=list(getattr(model, "feature_info", None) or []),
            num_modules=sum(1 for _ in model.modules()),
        )
    return _PROBES[name]


def _safe_probe(name: str) -> Optional[Dict[str, Any]]:
    """``probe`` for collection time: a model that fails to build must fail its own tests, not the module."""
    try:
        return probe(name)
    except Exception:  # noqa: BLE001  (reported by every test of that model)
        return None


REPRESENTATIVES = _representatives(MODELS)
SEGMENTATION = [n for n in MODELS if (_safe_probe(n) or {}).get("task") == "segmentation"]
CLASSIFIERS = [n for n in MODELS if n not in SEGMENTATION]


def build(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return kanzoo.create_model(name, **dict(probe(name)["kwargs"], **kwargs))


def is_segmentation(name: str) -> bool:
    return probe(name)["task"] == "segmentation"


def skip_if_declared(name: str, check: str) -> None:
    reason = probe(name)["skips"].get(check)
    if reason:
        pytest.skip(f"{name} declares {check!r} out of its contract: {reason}")


def reduction(cfg: Dict[str, Any]) -> Tuple[int, int]:
    """The total stride implied by the cfg (``input_size / pool_size``), (1, 1) without a pool_size."""
    pool = cfg.get("pool_size")
    if not pool:
        return 1, 1
    _, h, w = cfg["input_size"]
    return max(1, h // pool[0]), max(1, w // pool[1])


def input_size(name: str, min_pool: int = MIN_FEATURE_PX) -> Tuple[int, int, int]:
    """A small (C, H, W) the model accepts: ``TARGET_SIZE``, raised to ``min_input_size`` and to a multiple of
    the total reduction (at least ``min_pool`` feature pixels per side), never above the cfg's size."""
    cfg = probe(name)["cfg"]
    c, h, w = cfg["input_size"]
    if cfg.get("fixed_input_size"):
        return c, h, w
    lo = cfg.get("min_input_size") or (c, 1, 1)
    out = []
    for full, r, m in zip((h, w), reduction(cfg), lo[1:]):
        s = max(TARGET_SIZE, m, r * min_pool)
        s = r * math.ceil(s / r)
        out.append(s if s <= full else full)
    return (c, *out)


def randn(name: str, batch: int = 1, min_pool: int = MIN_FEATURE_PX, in_chans: Optional[int] = None) -> torch.Tensor:
    c, h, w = input_size(name, min_pool)
    return torch.randn(batch, in_chans or c, h, w, generator=torch.Generator().manual_seed(1))


def expected_pool(cfg: Dict[str, Any], hw: Tuple[int, int]) -> Tuple[int, int]:
    rh, rw = reduction(cfg)
    return math.ceil(hw[0] / rh), math.ceil(hw[1] / rw)


def first_output(out):
    return torch.cat(out) if isinstance(out, (tuple, list)) else out


def assert_finite(t: torch.Tensor, what: str) -> None:
    assert torch.isfinite(t).all(), f"{what}: {(~torch.isfinite(t)).sum().item()} non-finite values"


def check_output(name: str, out: torch.Tensor, x: torch.Tensor, num_classes: int) -> None:
    """Classifiers: (B, num_classes); segmentation models: (B, num_classes, H, W) at the input's size."""
    expected = (x.shape[0], num_classes) + ((tuple(x.shape[-2:])) if is_segmentation(name) else ())
    assert tuple(out.shape) == expected, f"{name}: output {tuple(out.shape)}, expected {expected}"


# ------------------------------------------------------------------------------------------------ per model
@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", MODELS)
def test_contract_declarations(name):
    """Declared exceptions name real checks and give a reason; the model says what task it solves."""
    p = probe(name)
    unknown = sorted(set(p["skips"]) - set(CONTRACT_CHECKS))
    assert not unknown, \
        f"{p['cls'].__name__}._contract_skip names unknown checks {unknown}; known: {sorted(CONTRACT_CHECKS)}"
    empty = [k for k, v in p["skips"].items() if not isinstance(v, str) or not v.strip()]
    assert not empty, f"{p['cls'].__name__}._contract_skip gives no reason for {empty}"
    assert p["task"] in ("classification", "segmentation"), f"{name}: unknown task {p['task']!r}"


@pytest.mark.parametrize("name", MODELS)
def test_accepts_width_scale(name):
    """Every family takes ``width_scale`` (the zoo's tests and quick experiments rely on it)."""
    p = probe(name)
    assert p["takes_width_scale"] and p["kwargs"], f"{p['cls'].__name__} has no width_scale argument"


@pytest.mark.parametrize("name", MODELS)
def test_forward(name):
    skip_if_declared(name, "forward")
    model = build(name).eval()
    x = randn(name, batch=1)
    out = first_output(model(x))
    check_output(name, out, x, model.num_classes)
    assert_finite(out, f"{name} forward")

    if probe(name)["skips"].get("grad_checkpointing"):
        return
    model.set_grad_checkpointing(True)
    assert getattr(model, "grad_checkpointing", True) is True, f"{name}: set_grad_checkpointing(True) not recorded"
    out2 = first_output(model(x))
    torch.testing.assert_close(out2, out, rtol=RTOL, atol=ATOL,
                               msg=lambda m: f"{name}: output changes with grad checkpointing\n{m}")


@pytest.mark.parametrize("name", MODELS)
def test_backward(name):
    skip_if_declared(name, "backward")
    model = build(name, num_classes=42).train()
    x = randn(name, batch=2)
    out = first_output(model(x))
    check_output(name, out, x, 42)
    assert_finite(out, f"{name} train forward")
    out.mean().backward()
    params = dict(model.named_parameters())
    no_grad = [n for n, p in params.items() if p.grad is None]
    if probe(name)["skips"].get("all_params_grad"):
        assert len(no_grad) < len(params), f"{name}: no parameter got a gradient"
    else:
        assert not no_grad, f"{name}: {len(no_grad)}/{len(params)} parameters get no gradient: {no_grad[:8]}"
    for n, p in params.items():
        if p.grad is not None:
            assert_finite(p.grad, f"{name} grad of {n}")


@pytest.mark.parametrize("name", MODELS)
def test_unknown_kwarg(name):
    skip_if_declared(name, "unknown_kwarg")
    with pytest.raises(TypeError, match="not_a_kanzoo_kwarg"):
        build(name, not_a_kanzoo_kwarg=1)


@pytest.mark.parametrize("name", MODELS)
def test_meta_device(name):
    skip_if_declared(name, "meta_device")
    model = build(name, device="meta")
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    off_meta = [f"{n} ({t.device})" for n, t in tensors if t.device.type != "meta"]
    assert tensors and not off_meta, f"{name}: tensors not on meta: {off_meta[:8]}"


@pytest.mark.parametrize("name", MODELS)
def test_bf16(name):
    skip_if_declared(name, "bf16")
    model = build(name).eval().to(torch.bfloat16)
    x = randn(name).to(torch.bfloat16)
    with torch.no_grad():
        out = first_output(model(x))
    assert out.dtype == torch.bfloat16, f"{name}: bf16 model returns {out.dtype}"
    check_output(name, out, x, model.num_classes)
    assert_finite(out.float(), f"{name} bf16 forward")


def _tag_cfgs(name: str) -> Dict[str, Dict[str, Any]]:
    names = [c for c in get_arch_pretrained_cfgs(name)] or [name]
    return {c: get_pretrained_cfg(c).to_dict() for c in names}


@pytest.mark.parametrize("name", MODELS)
def test_default_cfg(name):
    """timm's test_model_default_cfgs, at the test size (features at least 2×2 where the cfg allows)."""
    skip_if_declared(name, "default_cfg")
    model = build(name).eval()
    cfg = probe(name)["cfg"]
    state_dict = model.state_dict()
    for tag, tcfg in _tag_cfgs(name).items():
        for key in ("first_conv", "classifier"):
            mods = tcfg.get(key)
            if mods is None and is_segmentation(name):
                continue
            assert mods, f"{tag}: cfg has no {key}"
            for m in (mods,) if isinstance(mods, str) else mods:
                assert f"{m}.weight" in state_dict, f"{tag}: cfg {key}={m!r} but {m}.weight is not in the state_dict"
        assert reduction(tcfg) == reduction(cfg), \
            f"{tag}: input_size/pool_size ratio {reduction(tcfg)} differs from the default cfg's {reduction(cfg)}"
    if is_segmentation(name):
        assert model.num_classes > 0, f"{name}: segmentation model with num_classes={model.num_classes}"
        return

    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0, \
        f"{name}: num_classes={model.num_classes} num_features={model.num_features} " \
        f"head_hidden_size={model.head_hidden_size}"
    x = randn(name)
    pool = expected_pool(cfg, tuple(x.shape[-2:]))
    channel_dim = -1 if getattr(model, "output_fmt", "NCHW") == "NHWC" else 1
    spatial = slice(1, 3) if channel_dim == -1 else slice(2, 4)
    with torch.no_grad():
        feat = model.forward_features(x)
        if feat.ndim == 3:  # token models (ViT-style NLC features): timm's test_model_default_cfgs_non_std
            return _check_token_model(name, model, x, feat)
        assert feat.ndim == 4 and feat.shape[channel_dim] == model.num_features, \
            f"{name}: forward_features {tuple(feat.shape)}, num_features={model.num_features}"
        assert tuple(feat.shape[spatial]) == pool, \
            f"{name}: forward_features spatial {tuple(feat.shape[spatial])} at input {tuple(x.shape[-2:])}; " \
            f"cfg pool_size {cfg['pool_size']} at {cfg['input_size'][1:]} implies {pool}"
        pre = model.forward_head(feat, pre_logits=True)
        assert pre.shape == (1, model.head_hidden_size), \
            f"{name}: pre_logits {tuple(pre.shape)}, head_hidden_size={model.head_hidden_size}"

        model.reset_classifier(0)
        assert model.num_classes == 0
        out = model(x)
        assert out.shape == pre.shape, \
            f"{name}: reset_classifier(0) gives {tuple(out.shape)}, not pooled {tuple(pre.shape)}"

        model.reset_classifier(0, "")
        out = model(x)
        assert out.ndim == 4 and tuple(out.shape[spatial]) == pool, \
            f"{name}: reset_classifier(0, '') gives {tuple(out.shape)}, expected 4-D with spatial {pool}"

        unpooled = build(name, num_classes=0, global_pool="").eval()
        out = unpooled(x)
        assert out.ndim == 4 and out.shape[channel_dim] == model.num_features, \
            f"{name}: create_model(num_classes=0, global_pool='') gives {tuple(out.shape)}"


def _check_token_model(name: str, model: torch.nn.Module, x: torch.Tensor, feat: torch.Tensor) -> None:
    """The head API of a model whose forward_features gives tokens (B, N, C), as timm checks its ViTs."""
    assert feat.shape[0] == 1 and feat.shape[-1] == model.num_features, \
        f"{name}: forward_features {tuple(feat.shape)}, num_features={model.num_features}"
    pre = model.forward_head(feat, pre_logits=True)
    assert pre.shape == (1, model.head_hidden_size), \
        f"{name}: pre_logits {tuple(pre.shape)}, head_hidden_size={model.head_hidden_size}"
    model.reset_classifier(0)
    assert model.num_classes == 0 and model(x).shape == pre.shape, f"{name}: reset_classifier(0) is not pooled"
    model.reset_classifier(0, "")
    out = model(x)
    assert out.shape == feat.shape, f"{name}: reset_classifier(0, '') gives {tuple(out.shape)}, not the tokens"
    out = build(name, num_classes=0, global_pool="").eval()(x)
    assert out.shape == feat.shape, f"{name}: create_model(num_classes=0, global_pool='') gives {tuple(out.shape)}"


@pytest.mark.parametrize("name", MODELS)
def test_param_groups(name):
    skip_if_declared(name, "param_groups")
    from timm.models import group_parameters

    model = build(name, device="meta")
    names = {n for n, _ in model.named_parameters()}
    for coarse in (False, True):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        grouped = [n for g in groups.values() for n in g]
        assert len(groups) > 1, f"{name}: group_matcher(coarse={coarse}) puts every parameter in one group"
        assert sorted(grouped) == sorted(names), f"{name}: group_matcher(coarse={coarse}) misses or repeats"
    if hasattr(model, "no_weight_decay"):
        unknown = set(model.no_weight_decay()) - names - {n.rsplit(".", 1)[0] for n in names}
        assert not unknown, f"{name}: no_weight_decay() names {sorted(unknown)}, which are not parameters"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_reset_classifier(name):
    skip_if_declared(name, "reset_classifier")
    model = build(name, device="meta", dtype=torch.bfloat16).train()
    head = {n for n, _ in model.get_classifier().named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    model.reset_classifier(7)
    assert model.num_classes == 7
    fc = model.get_classifier()
    assert fc.weight.shape[0] == 7 and fc.weight.device.type == "meta" and fc.weight.dtype == torch.bfloat16, \
        f"{name}: new classifier {tuple(fc.weight.shape)} on {fc.weight.device}, {fc.weight.dtype}"
    assert fc.training, f"{name}: reset_classifier put the new head in eval mode"
    new = {id(p) for p in fc.parameters()}
    thawed = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in new]
    assert not thawed, f"{name}: reset_classifier unfroze {thawed[:5]} (old head params: {sorted(head)})"


@pytest.mark.parametrize("in_chans", [1, 4])
@pytest.mark.parametrize("name", MODELS)
def test_in_chans(name, in_chans):
    skip_if_declared(name, "in_chans")
    model = build(name, in_chans=in_chans).eval()
    x = randn(name, in_chans=in_chans)
    with torch.no_grad():
        out = first_output(model(x))
    check_output(name, out, x, model.num_classes)
    assert_finite(out, f"{name} in_chans={in_chans}")


@pytest.mark.parametrize("name", MODELS)
def test_drop_rate(name):
    skip_if_declared(name, "drop_rate")
    model = build(name, drop_rate=0.5)
    x = randn(name, batch=2)
    with torch.no_grad():
        model.eval()
        a, b = model(x), model(x)
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=lambda m: f"{name}: eval output is random\n{m}")
        check_output(name, a, x, model.num_classes)
        if not is_segmentation(name):
            model.train()
            torch.manual_seed(1)
            c = model(x)
            torch.manual_seed(2)
            d = model(x)
            assert not torch.equal(c, d), f"{name}: drop_rate=0.5 has no effect in train mode"


@pytest.mark.parametrize("name", MODELS)
def test_torchscript(name):
    x = randn(name)
    with set_scriptable(True):
        model = build(name).eval()
    with torch.no_grad():
        ref = first_output(model(x))
        if probe(name)["skips"].get("torchscript"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                compiled = torch.jit.trace(model, x)
        else:
            compiled = torch.jit.script(model)
        # without the profiling executor's optimisation passes (seconds per model; timm's test turns them
        # off globally): the check is that the scripted graph runs and computes what eager does
        with torch.jit.optimized_execution(False):
            out = first_output(compiled(x))
    torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL,
                               msg=lambda m: f"{name}: TorchScript output differs from eager\n{m}")


def feature_input(name: str, reductions: List[int], batch: int = 1) -> torch.Tensor:
    """The test input raised to a multiple of the largest reduction: every feature level then has an exact size."""
    c, h, w = input_size(name)
    r = max(reductions)
    return torch.randn(batch, c, r * math.ceil(h / r), r * math.ceil(w / r), generator=torch.Generator().manual_seed(1))


def check_levels(name: str, outs, x: torch.Tensor, chans: List[int], reds: List[int], what: str) -> None:
    """One NCHW tensor per level, with the declared channels and exactly (H, W) / reduction, finite."""
    assert isinstance(outs, (list, tuple)) and len(outs) == len(chans), \
        f"{name} {what}: {len(outs) if isinstance(outs, (list, tuple)) else type(outs)} outputs for {len(chans)} levels"
    h, w = x.shape[-2:]
    width = probe(name)["kwargs"].get("width_scale", 1.0)
    for i, (o, ch, red) in enumerate(zip(outs, chans, reds)):
        assert o.ndim == 4 and o.shape[0] == x.shape[0], f"{name} {what} level {i}: shape {tuple(o.shape)}"
        assert o.shape[1] == ch, f"{name} {what} level {i}: {o.shape[1]} channels, feature_info says {ch} " \
                                 f"(width {width})"
        assert tuple(o.shape[-2:]) == (h // red, w // red), \
            f"{name} {what} level {i}: spatial {tuple(o.shape[-2:])} at input {(h, w)}, feature_info reduction {red}"
        assert_finite(o, f"{name} {what} level {i}")


def assert_same(actual, expected, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}\n{m}")


@pytest.mark.parametrize("name", MODELS)
def test_features_only(name):
    skip_if_declared(name, "features_only")
    declared = probe(name)["feature_info"]
    assert len(declared) >= 3, f"{name}: feature_info has {len(declared)} levels (at least 3 expected)"
    model = build(name, features_only=True).eval()
    chans, reds = model.feature_info.channels(), model.feature_info.reduction()
    assert len(chans) >= 3, f"{name}: features_only model has {len(chans)} levels"
    x = feature_input(name, reds)
    with torch.no_grad():
        outs = model(x)
    check_levels(name, outs, x, chans, reds, "features_only")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_intermediates(name):
    """timm's test_model_forward_intermediates, and the index forms of timm's ``feature_take_indices``."""
    skip_if_declared(name, "forward_intermediates")
    model = build(name).eval()
    info = probe(name)["feature_info"]
    chans, reds = [f["num_chs"] for f in info], [f["reduction"] for f in info]
    x = feature_input(name, reds)
    with torch.no_grad():
        final, taps = model.forward_intermediates(x)
        check_levels(name, taps, x, chans, reds, "forward_intermediates")
        assert_same(final, model.forward_features(x), f"{name}: forward_intermediates' final != forward_features")

        # a list with a negative index, stopping early: taps 0 and n-2 in order; then an int: the last n, with
        # gradient checkpointing (without autograd: its code path, not its backward, which test_forward runs)
        _, selected = model.forward_intermediates(x, indices=[0, -2], stop_early=True)
        checkpointing = not probe(name)["skips"].get("grad_checkpointing")
        model.set_grad_checkpointing(checkpointing)
        final2, last = model.forward_intermediates(x, indices=1)
    for what, got, want in (("indices=[0, -2], stop_early", selected, [taps[0], taps[-2]]),
                            ("indices=1", last, taps[-1:])):
        assert isinstance(got, list) and len(got) == len(want), f"{name} {what}: {len(got)} taps"
        for g, t in zip(got, want):
            assert_same(g, t, f"{name}: {what} gives another tap")
    assert_same(final2, final, f"{name}: forward_intermediates' final changes with grad checkpointing")


def _check_params_used(name: str, model: torch.nn.Module, what: str) -> None:
    params = dict(model.named_parameters())
    no_grad = [n for n, p in params.items() if p.requires_grad and p.grad is None]
    if probe(name)["skips"].get("all_params_grad"):
        assert len(no_grad) < len(params), f"{name} {what}: no parameter got a gradient"
    else:
        assert not no_grad, f"{name} {what}: {len(no_grad)} parameters are unused: {no_grad[:8]}"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_prune_intermediate_layers(name):
    """timm's pruning checks (test_prune_intermediate_layers_contract, _params_used, _last_feature): pruned to
    the first level, and to the first and the one before the last (the deepest pruning that drops a level).
    Parameters used after pruning are checked at ``[0, -2]`` on one model per family (the pruning code is the
    family's; backward through most of a deep model is the costliest step here)."""
    skip_if_declared(name, "prune_intermediate_layers")
    model = build(name, drop_rate=0.5).eval()
    n = len(probe(name)["feature_info"])
    x = feature_input(name, [f["reduction"] for f in probe(name)["feature_info"]])
    with torch.no_grad():
        final, taps = model.forward_intermediates(x)
        expected = model.forward_head(final)
        assert model.prune_intermediate_layers([n - 1], prune_head=False) == [n - 1]
        assert_same(model(x), expected, f"{name}: prune_head=False at the last level changes the output")

    for indices, kwargs in (([0], {}), ([0, -2], dict(prune_norm=True))):
        what = f"pruned to {indices} ({kwargs})"
        pruned = copy.deepcopy(model) if indices == [0] else model
        take = pruned.prune_intermediate_layers(indices, **kwargs)
        want = [i % n for i in indices]
        assert take == want, f"{name}: prune_intermediate_layers({indices}) returns {take}, not {want}"
        with torch.no_grad():
            selected = pruned.forward_intermediates(x, indices=take, intermediates_only=True)
            assert len(selected) == len(take), f"{name} {what}: {len(selected)} taps for {take}"
            for i, tap in zip(take, selected):
                assert_same(tap, taps[i], f"{name} {what}: tap {i} differs from the unpruned model's")
            # the head keeps no classifier and no pooling: a CNN's output is its features, which end at the tap
            # (token models' outputs are their tokens)
            out = pruned(x)
            if out.ndim == 4:
                assert_same(out, taps[take[-1]], f"{name} {what}: forward(x) is not the last tap kept")
            assert_finite(out, f"{name} {what}")
            if take == [0]:
                assert torch.equal(out, pruned(x)), f"{name} {what}: the eval output is random"
        if take != [0] and name not in REPRESENTATIVES:
            continue
        pruned.train()
        selected = pruned.forward_intermediates(x, indices=take, norm=not kwargs, intermediates_only=True)
        sum(f.sum() for f in selected).backward()
        _check_params_used(name, pruned, what)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_features_getter(name):
    """timm's test_model_forward_intermediates_features, and equality with the unwrapped model."""
    skip_if_declared(name, "features_getter")
    getter = build(name, features_only=True, feature_cls="getter").eval()
    chans, reds = getter.feature_info.channels(), getter.feature_info.reduction()
    model = build(name).eval()
    unexpected = model.load_state_dict(getter.model.state_dict(), strict=False).unexpected_keys
    assert not unexpected, f"{name}: the getter's model has keys the model has not: {unexpected[:8]}"
    x = feature_input(name, reds)
    with torch.no_grad():
        outs = getter(x)
        check_levels(name, outs, x, chans, reds, "getter")
        expected = model.forward_intermediates(x, indices=getter.out_indices, intermediates_only=True)
    assert len(expected) == len(outs)
    for i, (o, e) in enumerate(zip(outs, expected)):
        assert_same(o, e, f"{name}: getter output {i} differs from forward_intermediates")


@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation(name):
    """Per-pixel logits at the input size, for any num_classes and a non-square input."""
    skip_if_declared(name, "segmentation")
    model = build(name, num_classes=3).eval()
    c, h, w = input_size(name)
    r = max([d["reduction"] for d in probe(name)["feature_info"]] or [1])
    x = torch.randn(2, c, h, max(w, r) * 2)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor), f"{name}: eval forward returns {type(out)}, not a tensor"
    assert tuple(out.shape) == (2, 3, h, x.shape[-1]), f"{name}: {tuple(out.shape)} for input {tuple(x.shape)}"
    assert model.num_classes == 3
    assert_finite(out, f"{name} segmentation")


def test_representatives_cover_every_family():
    """The per-family checks run on one model per python module that registers kanzoo models."""
    assert sorted({_module(n) for n in MODELS}) == sorted({_module(n) for n in REPRESENTATIVES})
    assert len(MODELS) >= len(REPRESENTATIVES) >= 1
