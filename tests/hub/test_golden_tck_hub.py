"""The published torch-conv-kan ImageNet VGGs (golden cases ``hub_*`` of ``tck/`` and ``tck_extra/``), with weights
from the README's weight rule: reference keys -> kanzoo through ``from_reference`` (float64) and through the
registered model's pretrained path and ``checkpoint_filter_fn`` (float32). ``vgg_kagn_bn11_v4_opt`` has only an
inferred configuration: kanzoo registers that architecture (its 3×3 flatten head) and reproduces the case, but
ships no tag for it."""
import pytest
import torch

import kanzoo
from kanzoo.compat.tck import from_reference
from kanzoo.compat.tck.checkpoint import describe_vgg_checkpoint, match_registered_vgg
from kanzoo.errors import NoPretrainedWeightsError
from tests.support.golden import UNCONFIRMED_HUB_CASES, load_case, tck_hub_cases, tck_hub_checkpoints
from tests.support.weight_rule import check_rule_checksums, rule_state

#: "hub_<arch>" -> (golden folder, case), confirmed and inferred configurations alike
ALL_CASES = {f"hub_{arch}": fc for arch, fc in tck_hub_cases(confirmed_only=False).items()}
OPT = "vgg_kagn_bn11_v4_opt"


def test_hub_cases():
    assert sorted(ALL_CASES) == ["hub_vgg_kagn11_v2", "hub_vgg_kagn11_v4", "hub_vgg_kagn_bn11_v4",
                                 "hub_vgg_kagn_bn11_v4_opt", "hub_vgg_kagn_bn11sa_v4"]
    assert UNCONFIRMED_HUB_CASES == (f"hub_{OPT}",)


@pytest.fixture(scope="module", params=list(ALL_CASES.values()), ids=lambda fc: fc[1]["name"])
def hub(request):
    """(case, stored tensors, reference state dict), generated once per case."""
    folder, case = request.param
    t, _ = load_case(folder, case)
    return case, t, rule_state(case["weight_salt"], case["state_keys"])


def test_unconfirmed_checkpoint_is_an_architecture_without_a_tag():
    """The _opt checkpoint's configuration is inferred: kanzoo registers the architecture (which reproduces the
    golden case below) but no tag, so pretrained=True without a weight source is the no-weights error, and
    its cfg says that the configuration is inferred and how to load the file."""
    _, case = ALL_CASES[f"hub_{OPT}"]
    assert kanzoo.list_models(f"{OPT}*") == [OPT]
    assert not kanzoo.list_pretrained(f"{OPT}*")
    assert [c for c in kanzoo.models._factory.get_arch_pretrained_cfgs(OPT) if "." in c] == []
    cfg = kanzoo.models._factory.get_pretrained_cfg(OPT)
    assert not cfg.has_weights and cfg.hf_hub_id is None and cfg.upstream is None
    hint = f'pretrained_cfg_overlay=dict(hf_hub_id="{case["hub_repo"]}")'
    assert "inferred" in cfg.description and "no pretrained tag" in cfg.description
    assert "inferred" in cfg.notes[0] and hint in cfg.notes[1]
    assert "22,052,563" in cfg.provenance and "16 configurations" in cfg.provenance and hint in cfg.provenance
    assert hint in kanzoo.models.vgg_kan.vgg_kagn_bn11_v4_opt.__doc__
    with pytest.raises(NoPretrainedWeightsError, match=rf"'{OPT}' has no pretrained weights.*hf_hub_id=") as e:
        kanzoo.create_model(OPT, pretrained=True)
    assert "\n" not in str(e.value)
    with torch.device("meta"):
        ref = from_reference(case)
        registered = kanzoo.create_model(OPT)
    assert registered.head_pool_size == ref.head_pool_size == tuple(case["ctor_kwargs"]["expected_feature_shape"])
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in registered.state_dict().items()}


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
    if case["name"] in UNCONFIRMED_HUB_CASES:  # an architecture without a tag: the weights come as an overlay
        name = arch
    else:
        name = f"{arch}.tck_in1k"
        assert kanzoo.models._factory.get_pretrained_cfg(name).hf_hub_id == case["hub_repo"]
    # the pretrained path of timm: state -> checkpoint_filter_fn (key conversion) -> strict load
    model = kanzoo.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(state_dict=dict(state))).eval()
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


def test_convert_matches_the_inferred_architecture_only_on_its_exact_layout():
    """``kanzoo convert`` (match_registered_vgg) reads a torch-conv-kan config.json: the _opt repo's inferred
    config maps to vgg_kagn_bn11_v4_opt, vgg_kagn_bn11_v4's to itself; a (1, 9) head, whose classifier has
    the same shape as the (3, 3) one, or a width-4 file match nothing."""
    checkpoints = tck_hub_checkpoints()
    for arch in (OPT, "vgg_kagn_bn11_v4"):
        config = checkpoints[f"brivangl/{arch}"]["config_json"]
        description = describe_vgg_checkpoint(config, {"features.0.layer_norm.0.running_mean": torch.zeros(1)})
        assert match_registered_vgg(description) == (arch, {"num_classes": 1000, "in_chans": 3})
    config = dict(checkpoints[f"brivangl/{OPT}"]["config_json"])
    for change, where in ((dict(expected_feature_shape=[1, 9]), r"head_pool_size \(1, 9\)"),
                          (dict(width_scale=4), r"width_scale 4")):
        description = describe_vgg_checkpoint(dict(config, **change), {"x.running_mean": torch.zeros(1)})
        with pytest.raises(ValueError, match=rf"differs from the registered 'vgg_kagn_bn11_v4' .*{where}.*no kanzoo "
                                             rf"name yet"):
            match_registered_vgg(description)
