"""The encoder contract of kanzoo's segmentation models (UKANet, U2KANet, U-KAN), in the spirit of timm's
intermediate-feature tests (timm 1.0.31 ``tests/test_models.py``): what a segmentation_models_pytorch-style
decoder takes from an encoder.

Every registered model whose pretrained cfg says ``task=segmentation`` must give:

* ``feature_info``: at least 3 encoder levels, each naming a real module; ``forward_intermediates`` gives one
  NCHW tensor per level with those channels and (padded input) / reduction spatial size, and a final tensor
  equal to ``forward_features``;
* ``indices`` (int, negative, list) and ``stop_early`` picking the same tensors, with or without gradient
  checkpointing;
* ``forward_head`` (decoder and output conv) on the encoder features: ``forward`` is it, cropped to the input
  size; ``pre_logits`` gives ``head_hidden_size`` channels;
* ``prune_intermediate_layers``: the kept levels unchanged, ``forward_features`` and ``forward`` ending at the
  deepest kept level, decoder and output convs gone, every kept parameter used; ``prune_head=False`` at the last
  level changes nothing;
* ``features_only=True`` (timm's FeatureGetterNet): outputs equal to the unwrapped model's
  ``forward_intermediates`` with the same weights, channels and reductions as its ``feature_info``.

Models are built with ``width_scale=0.125`` and run at 32×64 (a multiple of every reduction, non-square) and at
20×36 (a multiple of neither UKANet's 8 nor U-KAN's 32).
"""
import copy
import math
from typing import List

import pytest
import torch
from timm.models import get_pretrained_cfg

import kanzoo

WIDTH = 0.125
RTOL, ATOL = 1e-4, 1e-5


def _is_segmentation(name: str) -> bool:
    cfg = get_pretrained_cfg(name)
    return cfg is not None and "task=segmentation" in (cfg.notes or ())


SEGMENTERS = [n for n in kanzoo.list_models() if _is_segmentation(n)]


def build(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return kanzoo.create_model(name, width_scale=WIDTH, **kwargs)


def image(h: int = 32, w: int = 64, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1))


def padded(model: torch.nn.Module, x: torch.Tensor):
    """The (H, W) the encoder sees: the input padded to ``pad_multiple`` as ``forward`` pads it."""
    m = getattr(model, "pad_multiple", 1)
    return tuple(m * math.ceil(s / m) for s in x.shape[-2:])


def assert_same(actual, expected, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}\n{m}")


def assert_levels(name: str, feats: List[torch.Tensor], model, x: torch.Tensor, levels: List[int]) -> None:
    """``feats[k]`` is level ``levels[k]`` of ``feature_info``: channels, (padded) size / reduction, finite."""
    assert isinstance(feats, list) and len(feats) == len(levels), f"{name}: {len(feats)} features for {levels}"
    h, w = padded(model, x)
    for f, i in zip(feats, levels):
        info = model.feature_info[i]
        r = info["reduction"]
        want = (x.shape[0], info["num_chs"], math.ceil(h / r), math.ceil(w / r))
        assert tuple(f.shape) == want, f"{name} level {i}: {tuple(f.shape)}, feature_info implies {want}"
        assert torch.isfinite(f).all(), f"{name} level {i}: non-finite values"


def test_segmenters_are_found():
    assert {n.split("_")[0] for n in SEGMENTERS} == {"ukanet", "u2kanet", "ukan"}, SEGMENTERS


@pytest.mark.parametrize("name", SEGMENTERS)
def test_forward_intermediates(name):
    model = build(name).eval()
    n = len(model.feature_info)
    assert n >= 3, f"{name}: {n} encoder levels"
    for info in model.feature_info:
        model.get_submodule(info["module"])  # names a real module
    reductions = [info["reduction"] for info in model.feature_info]
    assert reductions == sorted(reductions), f"{name}: reductions {reductions} are not shallowest first"
    x = image()
    with torch.no_grad():
        final, taps = model.forward_intermediates(x)
        assert_levels(name, taps, model, x, list(range(n)))
        assert_same(final, model.forward_features(x), f"{name}: final != forward_features")
        assert_same(final, taps[-1], f"{name}: final != the deepest level")
        assert model.num_features == taps[-1].shape[1]

        only = model.forward_intermediates(x, intermediates_only=True)
        assert len(only) == n
        for i in range(n):
            assert_same(only[i], taps[i], f"{name}: intermediates_only level {i}")
            end, sel = model.forward_intermediates(x, indices=[i], stop_early=True)
            assert len(sel) == 1, f"{name}: stop_early at {i} gives {len(sel)} levels"
            assert_same(sel[0], taps[i], f"{name}: stop_early level {i}")
            assert_same(end, taps[i], f"{name}: stop_early at {i}, the final tensor is not level {i}")
        for indices, levels in ((2, [n - 2, n - 1]), ([0, -1], [0, n - 1]), ([-3], [n - 3])):
            sel = model.forward_intermediates(x, indices=indices, intermediates_only=True)
            assert len(sel) == len(levels), f"{name}: indices={indices} gives {len(sel)} levels"
            for s, i in zip(sel, levels):
                assert_same(s, taps[i], f"{name}: indices={indices}, level {i}")
        with pytest.raises((AssertionError, ValueError)):
            model.forward_intermediates(x, indices=[n])
        with pytest.raises(ValueError, match="NCHW"):
            model.forward_intermediates(x, output_fmt="NHWC")

        model.set_grad_checkpointing(True)
        final2, taps2 = model.forward_intermediates(x)
    assert_same(final2, final, f"{name}: final changes with grad checkpointing")
    for i, (a, b) in enumerate(zip(taps2, taps)):
        assert_same(a, b, f"{name}: level {i} changes with grad checkpointing")


@pytest.mark.parametrize("name", SEGMENTERS)
def test_forward_head_decodes_the_encoder_features(name):
    """At 20×36, which UKANet and U-KAN pad (to 24×40 and 32×64): forward crops what forward_head gives."""
    size = (20, 36)
    model = build(name, num_classes=3).eval()
    x = image(*size, batch=2)
    with torch.no_grad():
        expected = model(x)
        feats = model.forward_intermediates(x, intermediates_only=True)
        assert_levels(name, feats, model, x, list(range(len(model.feature_info))))
        logits = model.forward_head(feats)
        pre = model.forward_head(feats, pre_logits=True)
    hp, wp = padded(model, x)
    assert tuple(logits.shape) == (2, 3, hp, wp), f"{name}: forward_head gives {tuple(logits.shape)}"
    assert_same(logits[:, :, :size[0], :size[1]], expected, f"{name}: forward != forward_head(encoder features)")
    assert tuple(pre.shape) == (2, model.head_hidden_size, hp, wp), f"{name}: pre_logits {tuple(pre.shape)}"


@pytest.mark.parametrize("name", SEGMENTERS)
def test_prune_intermediate_layers(name):
    model = build(name, num_classes=2).eval()
    n = len(model.feature_info)
    x = image()
    with torch.no_grad():
        expected = model(x)
        taps = model.forward_intermediates(x, intermediates_only=True)
        kept = copy.deepcopy(model)
        assert kept.prune_intermediate_layers([n - 1], prune_head=False) == [n - 1]
        assert_same(kept(x), expected, f"{name}: prune_head=False at the last level changes the output")
    full_params = sum(p.numel() for p in model.parameters())

    for indices in ([0], [1, -2], [n - 1]):
        pruned = copy.deepcopy(model)
        take = pruned.prune_intermediate_layers(indices)
        assert take == [i % n for i in indices], f"{name}: prune_intermediate_layers({indices}) returns {take}"
        deepest = take[-1]
        chs = model.feature_info[deepest]["num_chs"]
        assert pruned.num_features == pruned.head_hidden_size == chs and pruned.num_classes == 0
        assert sum(p.numel() for p in pruned.parameters()) < full_params, f"{name}: pruning {indices} kept everything"
        with torch.no_grad():
            selected = pruned.forward_intermediates(x, indices=take, intermediates_only=True)
            assert len(selected) == len(take)
            for i, s in zip(take, selected):
                assert_same(s, taps[i], f"{name} pruned to {indices}: level {i} differs")
            assert_same(pruned.forward_features(x), taps[deepest], f"{name} pruned to {indices}: forward_features")
            assert_same(pruned(x), taps[deepest], f"{name} pruned to {indices}: forward is not the deepest level")
        pruned.train()
        selected = pruned.forward_intermediates(x, indices=take, intermediates_only=True)
        sum(s.sum() for s in selected).backward()
        unused = [k for k, p in pruned.named_parameters() if p.grad is None]
        assert not unused, f"{name} pruned to {indices}: {len(unused)} parameters unused: {unused[:6]}"

    # a new head on a pruned model classifies the deepest kept level
    pruned = copy.deepcopy(model)
    pruned.prune_intermediate_layers([1])
    pruned.reset_classifier(4)
    with torch.no_grad():
        out = pruned(x)
    assert out.shape[:2] == (1, 4), f"{name}: reset_classifier(4) after pruning gives {tuple(out.shape)}"


@pytest.mark.parametrize("name", SEGMENTERS)
def test_features_only(name):
    """timm's FeatureGetterNet (the default ``features_only`` wrapper), pruned to the levels asked for."""
    model = build(name).eval()
    n = len(model.feature_info)
    x = image(20, 36)
    for kwargs in (dict(), dict(feature_cls="getter", out_indices=(1, -2))):
        feats = build(name, features_only=True, **kwargs).eval()
        levels = [i % n for i in kwargs.get("out_indices", range(n))]
        assert feats.feature_info.channels() == [model.feature_info[i]["num_chs"] for i in levels]
        assert feats.feature_info.reduction() == [model.feature_info[i]["reduction"] for i in levels]
        state = feats.model.state_dict()
        ref = copy.deepcopy(model)
        result = ref.load_state_dict(state, strict=False)
        assert not result.unexpected_keys and result.missing_keys, \
            f"{name} {kwargs}: the wrapped encoder keeps keys {result.unexpected_keys[:4]} or the whole model"
        with torch.no_grad():
            outs = feats(x)
            expected = ref.forward_intermediates(x, indices=levels, intermediates_only=True)
        assert_levels(name, outs, model, x, levels)
        for i, (o, e) in enumerate(zip(outs, expected)):
            assert_same(o, e, f"{name} {kwargs}: features_only output {i} != forward_intermediates")
