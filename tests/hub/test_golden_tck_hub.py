"""The published torch-conv-kan ImageNet VGGs (golden cases ``hub_*`` of ``tck/`` and ``tck_extra/``), with weights
from the README's weight rule: reference keys -> kanzoo through ``from_reference`` (float64) and through the
registered model's pretrained path and ``checkpoint_filter_fn`` (float32). ``vgg_kagn_bn11_v4_opt`` has only an
inferred configuration, which kanzoo refuses with a clear error (it is not registered)."""
import pytest
import torch

import kanzoo
from kanzoo.compat.tck import from_reference
from tests.support.golden import UNCONFIRMED_HUB_CASES, load_case, tck_hub_cases
from tests.support.weight_rule import check_rule_checksums, rule_state

#: "hub_<arch>" -> (golden folder, case), confirmed and inferred configurations alike
ALL_CASES = {f"hub_{arch}": fc for arch, fc in tck_hub_cases(confirmed_only=False).items()}
HUB_CASES = [fc for n, fc in ALL_CASES.items() if n not in UNCONFIRMED_HUB_CASES]


def test_hub_cases():
    assert sorted(ALL_CASES) == ["hub_vgg_kagn11_v2", "hub_vgg_kagn11_v4", "hub_vgg_kagn_bn11_v4",
                                 "hub_vgg_kagn_bn11_v4_opt", "hub_vgg_kagn_bn11sa_v4"]


@pytest.fixture(scope="module", params=HUB_CASES, ids=lambda fc: fc[1]["name"])
def hub(request):
    """(case, stored tensors, reference state dict), generated once per case."""
    folder, case = request.param
    t, _ = load_case(folder, case)
    return case, t, rule_state(case["weight_salt"], case["state_keys"])


def test_unconfirmed_checkpoint_is_refused_not_guessed():
    """The _opt checkpoint's inferred config flattens a 3×3 map into its classifier: kanzoo says so, and
    registers neither the architecture under that name nor a tag."""
    _, case = ALL_CASES["hub_vgg_kagn_bn11_v4_opt"]
    with pytest.raises(ValueError, match=r"expected_feature_shape=\[3, 3\] flattens a pooled map"):
        from_reference(case)
    assert not kanzoo.list_models("vgg_kagn_bn11_v4_opt*")


def test_rule_checksums(hub):
    case, _, state = hub
    assert list(state) == [k for k, _, _ in case["state_keys"]]
    check_rule_checksums(state, case["rule_checksums"])


def _tol(case, dtype):
    tol = case["tolerance"][dtype]
    return dict(atol=tol["atol"], rtol=tol["rtol"])


def test_from_reference_float64(hub):
    case, t, state = hub
    model = from_reference(case, state, dtype=torch.float64).eval()
    assert sum(p.numel() for p in model.parameters()) == case["num_params"]
    assert sum(b.numel() for b in model.buffers()) == case["num_buffer_elements"]
    assert len(model.state_dict()) == case["num_state_keys"]
    with torch.no_grad():
        feats = model.forward_features(t["input"])
        logits = model.forward_head(feats)
    torch.testing.assert_close(feats, t["features_output"], **_tol(case, "float64"))
    torch.testing.assert_close(logits, t["output"], **_tol(case, "float64"))


def test_registered_model_float32(hub):
    case, t, state = hub
    arch = case["name"][len("hub_"):]
    assert case["hub_repo"] == f"brivangl/{arch}"
    assert kanzoo.models._factory.get_pretrained_cfg(f"{arch}.tck_in1k").hf_hub_id == case["hub_repo"]
    # the pretrained path of timm: state -> checkpoint_filter_fn (key conversion) -> strict load
    model = kanzoo.create_model(f"{arch}.tck_in1k", pretrained=True,
                                pretrained_cfg_overlay=dict(state_dict=dict(state))).eval()
    assert sum(p.numel() for p in model.parameters()) == case["num_params"]
    with torch.no_grad():
        y = model(t["input"].float())
    torch.testing.assert_close(y, t["output_fp32"], **_tol(case, "float32"))


def test_hub_config_builds_same_layout(hub):
    """The hub ``config.json`` arguments (positional ones as keywords; norm_layer added for BN) give the
    same kanzoo layout as the constructor arguments."""
    case, _, _ = hub
    config = dict(case["hub_mixin_config_captured_by_reference"])
    if "norm_layer" in case["ctor_kwargs"]:
        config["norm_layer"] = case["ctor_kwargs"]["norm_layer"]
    with torch.device("meta"):
        a = from_reference(case).state_dict()
        b = from_reference(dict(case, ctor_args=[], ctor_kwargs=config)).state_dict()
    assert len(a) == len(b) == case["num_state_keys"]
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
