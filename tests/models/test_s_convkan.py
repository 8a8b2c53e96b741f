"""The s_convkan_* zoo models: registration, phase settings in the cfg, and train -> select -> prune -> export."""
import io
import warnings

import pytest
import torch
from timm.models import get_pretrained_cfg
from torch import nn

import kanzoo
from kanzoo import profile
from kanzoo.layers import (
    KANConvNd,
    NotPrunedError,
    PrunedKANConvNd,
    SelectableKANConv2d,
    check_exportable,
    selectable_layers,
)
from kanzoo.workflows.selection import SelectionSchedule, selection_schedule

NAMES = ["s_convkan_base", "s_convkan_small", "s_convkan_tiny"]


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: a second intra-op thread only adds synchronisation (and on a busy CI machine,
    waits of seconds per step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registered_with_phase_settings():
    assert kanzoo.list_models("s_convkan_*") == NAMES
    for name in NAMES:
        sched = selection_schedule(name)
        assert isinstance(sched, SelectionSchedule) and sched.full_epochs >= 1 and sched.top_k == 1 and sched.prune
        cfg = get_pretrained_cfg(name)
        assert cfg.selection == sched.to_dict()
        assert "selection" not in cfg.to_dict()           # timm-readable config.json stays clean
        assert "arXiv:2408.08338" in cfg.paper_ids
    assert get_pretrained_cfg("s_convkan_tiny").input_size == (1, 28, 28)
    with pytest.raises(ValueError, match="has no selection settings"):
        selection_schedule("simple_conv_kagn")


def test_model_layers_and_no_weight_decay():
    model = kanzoo.create_model("s_convkan_small", device="meta")
    layers = selectable_layers(model)
    assert len(layers) == 4 and all(isinstance(m, SelectableKANConv2d) for _, m in layers)
    assert [m.out_channels for _, m in layers] == [16, 32, 64, 128]
    assert model.no_weight_decay() == {f"stages.{i}.alpha" for i in range(4)}
    assert not model.pretrained_cfg.get("selection")


def _data(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 12, 12, generator=g)
    y = (x[:, :, :6].mean(dim=(1, 2, 3)) > x[:, :, 6:].mean(dim=(1, 2, 3))).long()
    return x, y


def test_trains_selects_prunes_and_exports():
    torch.manual_seed(0)
    model = kanzoo.create_model("s_convkan_tiny", width_scale=0.25, num_classes=2)
    sched = SelectionSchedule(full_epochs=2, select_epochs=1)
    x, y = _data()
    params = lambda: [p for p in model.parameters() if p.requires_grad]  # noqa: E731
    opt = torch.optim.Adam(params(), lr=0.05)
    alpha0 = model.stages[1].alpha.detach().clone()
    events, losses = [], []
    for epoch in range(4):
        if epoch == 3:   # the pruning epoch: outputs just before and just after pruning must agree
            assert not torch.equal(model.stages[1].alpha.detach(), alpha0)  # α trained
            model.eval()
            with torch.no_grad():
                before_prune = model(x)
            with pytest.raises(NotPrunedError):
                check_exportable(model)
            unpruned_flops = profile.count(model, (1, 12, 12)).flops
        event = sched.on_epoch_start(epoch, model)
        events.append(event)
        if event == "prune":
            model.eval()
            with torch.no_grad():
                torch.testing.assert_close(model(x), before_prune, rtol=1e-5, atol=1e-5)
            opt = torch.optim.Adam(params(), lr=0.05)
        model.train()
        for _ in range(2):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.on_epoch_end(epoch, model, {"loss": losses[-1]})
    assert events == [None, None, "select", "prune"]
    assert all(map(lambda v: v == v, losses))
    assert not selectable_layers(model)
    assert all(isinstance(m, (KANConvNd, PrunedKANConvNd)) for m in model.stages)
    assert [h["phase"] for h in sched.history] == ["full", "full", "select", "pruned"]
    assert profile.count(model, (1, 12, 12)).flops < unpruned_flops / 2

    model.eval()
    check_exportable(model)
    ex = x[:2]
    with torch.no_grad():
        ref = model(ex)
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ex,), buf, dynamo=False, input_names=["x"])
    sess = onnxruntime.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": ex.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-4)


def test_model_prune_is_exact_after_select():
    torch.manual_seed(1)
    model = kanzoo.create_model("s_convkan_tiny", width_scale=0.5).eval()
    with torch.no_grad():
        for _, layer in selectable_layers(model):
            layer.alpha.normal_(0, 2)
            layer.norm.running_mean.uniform_(-0.5, 0.5)
    counts = model.select(1)
    assert set(counts) == {f"stages.{i}" for i in range(4)}
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
        model.prune()
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert model.selection_summary() == {k: {b: c for b, c in v.items() if c} for k, v in counts.items()}


def test_unpruned_model_refuses_onnx_export():
    model = kanzoo.create_model("s_convkan_tiny", width_scale=0.25).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NotPrunedError, match="prune_model"):
            torch.onnx.export(model, (torch.randn(1, 1, 28, 28),), io.BytesIO(), dynamo=False)
