"""kanzoo.weights: checkpoint unwrapping, the one strict loader, and every "name + weights" path going through it."""
import json
import logging

import pytest
import torch
from safetensors.torch import save_file

import kanzoo
from kanzoo.errors import WeightsFileError, WeightsMismatchError
from kanzoo.export import build_model
from kanzoo.weights import fit_state_dict, load_state_file, load_state_strict, unwrap_checkpoint

NAME = "simple_conv_kagn"
SMALL = dict(width_scale=0.125)


def small(**kwargs):
    return kanzoo.create_model(NAME, **dict(SMALL, **kwargs)).eval()


def save(state, path):
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "state_dict_ema", "model", "module.", "_orig_mod."])
def test_unwrap_checkpoint_finds_the_weights(wrap):
    state = {"a.weight": torch.ones(1), "b.bias": torch.zeros(1)}
    if wrap in ("module.", "_orig_mod."):
        given = {wrap + k: v for k, v in state.items()}
    elif wrap == "plain":
        given = dict(state)
    else:
        given = {wrap: state, "epoch": 3, "optimizer": {}}
    out = unwrap_checkpoint(given)
    assert out == state and out is not state


def test_a_prefix_on_only_some_keys_is_kept():
    state = {"module.a": torch.ones(1), "b": torch.ones(1)}
    assert unwrap_checkpoint(state) == state


def test_fit_reports_every_kind_of_mismatch_in_one_error():
    model = small(num_classes=3)
    state = dict(model.state_dict())
    missing = next(iter(state))
    del state[missing]
    state["not.a.key"] = torch.zeros(1)
    state["head.fc.bias"] = torch.zeros(5)
    with pytest.raises(WeightsMismatchError) as info:
        fit_state_dict(model, state, source="f.safetensors", name=NAME)
    e = info.value
    assert e.missing == [missing] and e.unexpected == ["not.a.key"]
    assert e.shapes == ["head.fc.bias (5,) vs (3,)"]
    assert "\n" not in str(e) and "does not fit simple_conv_kagn" in str(e)
    assert isinstance(e, ValueError) and isinstance(e, kanzoo.errors.KanzooError)


def test_strict_pretrained_load_with_a_replaced_head_still_checks_every_other_key(tmp_path):
    src = small(num_classes=2)
    state = dict(src.state_dict())
    del state["stages.0.weight"]
    path = save(state, tmp_path / "missing.safetensors")
    with pytest.raises(WeightsMismatchError, match=r"stages\.0\.weight"):
        small(num_classes=2, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    with pytest.raises(WeightsMismatchError, match=r"stages\.0\.weight"):
        small(num_classes=10, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_a_head_that_fits_is_loaded_even_when_num_classes_differs_from_the_cfg(tmp_path):
    src = small(num_classes=2)
    path = save(src.state_dict(), tmp_path / "w.safetensors")
    loaded = small(num_classes=2, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert same_weights(loaded, src)


def test_a_replaced_head_is_said_in_one_line(tmp_path, caplog):
    src = small(num_classes=2)
    path = save(src.state_dict(), tmp_path / "w.safetensors")
    with caplog.at_level(logging.WARNING, logger="kanzoo"):
        loaded = small(num_classes=5, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    lines = [r.getMessage() for r in caplog.records if r.name == "kanzoo"]
    assert len(lines) == 1 and "head.fc.weight" in lines[0] and "\n" not in lines[0]
    own, theirs = loaded.state_dict(), src.state_dict()
    body = [k for k in theirs if not k.startswith("head.fc.")]
    assert all(torch.equal(own[k], theirs[k]) for k in body)
    assert loaded.head.fc.weight.shape == (5, src.head.fc.weight.shape[1])


def test_checkpoint_path_reads_shape_arguments_from_the_file_and_loads_exactly(tmp_path):
    src = small(num_classes=7, in_chans=1)
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}, "epoch": 1},
               tmp_path / "ckpt.pth")
    for path in (save(src.state_dict(), tmp_path / "w.safetensors"), tmp_path / "ckpt.pth"):
        loaded = kanzoo.create_model(NAME, checkpoint_path=path, **SMALL)
        assert loaded.num_classes == 7 and loaded.in_chans == 1 and same_weights(loaded, src)
        exported = build_model(NAME, checkpoint=path, model_kwargs=SMALL)
        assert same_weights(exported, src)


def test_checkpoint_path_with_other_model_arguments_is_one_clear_error(tmp_path):
    path = save(small().state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(WeightsMismatchError, match="shapes differ"):
        kanzoo.create_model(NAME, checkpoint_path=path)  # full width
    with pytest.raises(ValueError, match="not both"):
        kanzoo.create_model(NAME, checkpoint_path=path, pretrained=True)


class Payload:
    """Any object beyond tensors and containers: torch.load(weights_only=True) must refuse it."""


def test_unsafe_or_damaged_files_are_refused(tmp_path):
    torch.save({"w": Payload()}, tmp_path / "evil.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    for name in ("evil.pth", "cut.safetensors"):
        with pytest.raises(WeightsFileError):
            load_state_file(tmp_path / name)


def test_load_state_strict_loads_or_leaves_the_model_untouched():
    model, other = small(), small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = dict(other.state_dict())
    bad.pop(next(iter(bad)))
    with pytest.raises(WeightsMismatchError):
        load_state_strict(model, bad, source="bad", name=NAME)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    load_state_strict(model, other.state_dict(), source="good", name=NAME)
    assert same_weights(model, other)


def test_a_local_dir_needs_timms_config_layout(tmp_path):
    model = small(num_classes=3)
    save(model.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(kanzoo.errors.WeightsNotFoundError, match="has no config.json"):
        kanzoo.create_model(f"local-dir:{tmp_path}", pretrained=True)
    config = {"architecture": NAME, "num_classes": 3, "model_args": dict(SMALL)}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsFileError, match="model_args but no pretrained_cfg"):
        kanzoo.create_model(f"local-dir:{tmp_path}", pretrained=True)
    (tmp_path / "config.json").write_text(json.dumps(dict(config, pretrained_cfg={"num_classes": 3})))
    assert same_weights(kanzoo.create_model(f"local-dir:{tmp_path}", pretrained=True), model)
    (tmp_path / "config.json").write_text(json.dumps(dict(config, architecture="no_such_net", pretrained_cfg={})))
    with pytest.raises(kanzoo.errors.UnknownModelError, match="no_such_net"):
        kanzoo.create_model(f"local-dir:{tmp_path}", pretrained=True)
