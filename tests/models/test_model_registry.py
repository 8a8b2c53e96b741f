"""Registry hygiene: kanzoo's names live beside timm's without touching them, follow the naming scheme
(``kanzoo.models._naming``), and the listing and error paths of ``kanzoo.create_model`` say what they should."""
import json
import os
import subprocess
import sys

import pytest
import timm
from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg, split_model_name_tag
from timm.models._registry import _model_entrypoints, _model_to_module

import kanzoo
from kanzoo.layers import Basis, get_basis_class
from kanzoo.models import UnknownModelError
from kanzoo.models._naming import SCHEME, parse_model_name
from tests import support

REPO = str(support.REPO)

MODELS = kanzoo.list_models()


def _python(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def timm_only():
    """timm's own registry, read in a fresh interpreter that never imports kanzoo."""
    code = ("import json, sys, timm\n"
            "from timm.models._registry import _module_to_models\n"
            "assert 'kanzoo' not in sys.modules\n"
            "print(json.dumps({'models': timm.list_models(), 'modules': sorted(_module_to_models)}))")
    return json.loads(_python(code))


def test_registry_is_not_empty():
    assert len(MODELS) >= 18 and "simple_conv_kagn" in MODELS


def test_names_do_not_collide_with_timm(timm_only):
    clash = sorted(set(MODELS) & set(timm_only["models"]))
    assert not clash, f"kanzoo registers names timm already has (timm's would be replaced): {clash}"
    # and importing kanzoo removed none of timm's models
    missing = sorted(set(timm_only["models"]) - set(timm.list_models()))
    assert not missing, f"timm models gone after importing kanzoo: {missing[:10]}"
    assert set(timm.list_models()) == set(timm_only["models"]) | set(MODELS)


def test_module_keys_do_not_collide_with_timm(timm_only):
    """timm keys models by the last part of the module path: `list_models(module='vgg')` would mix families."""
    ours = {_model_to_module[n] for n in MODELS}
    clash = sorted(ours & set(timm_only["modules"]))
    assert not clash, f"kanzoo model modules named like timm's: {clash}; give them distinctive file names"


@pytest.mark.parametrize("name", MODELS)
def test_name_follows_scheme(name):
    parts = parse_model_name(name)
    assert parts is not None, f"{name!r} matches none of the naming schemes: {[r for r, _ in SCHEME.values()]}"


@pytest.mark.parametrize("name", MODELS)
def test_name_says_the_basis(name):
    """The basis tag in the name is the basis that the model's KAN layers use."""
    parts = parse_model_name(name) or pytest.fail(f"{name} outside the naming scheme")
    model = kanzoo.create_model(name, device="meta")
    used = {type(m) for m in model.modules() if isinstance(m, Basis)}
    if parts["basis"] == "selectable":  # S-KAN: the layers choose among a pool of bases
        from kanzoo.layers.selectable import selectable_layers
        pools = {b for _, layer in selectable_layers(model) for b in layer.bases}
        assert pools and used == {get_basis_class(b) for b in pools} and len(used) > 1, \
            f"{name}: a selectable model must use its pools' bases, got {sorted(c.__name__ for c in used)}"
        return
    if parts["basis"] == "rational":  # KAT: group-rational activations (kanzoo.layers.GroupRational), no basis
        from kanzoo.layers import GroupRational
        assert not used and any(isinstance(m, GroupRational) for m in model.modules()), \
            f"{name}: a KAT model's KAN layers are GroupRationals, got bases {sorted(c.__name__ for c in used)}"
        return
    assert used == {get_basis_class(parts["basis"])}, \
        f"{name}: tag {parts['basis_tag']!r} means {parts['basis']}, the model uses {sorted(c.__name__ for c in used)}"


def test_scheme_examples():
    assert parse_model_name("vgg_kagn_bn11_v4") == dict(scheme="cnn", family="vgg", basis="gram", basis_tag="kagn",
                                                        variant="bn", depth="11", version="4")
    assert parse_model_name("vgg_kagn_bn11_v4_opt") == dict(scheme="cnn", family="vgg", basis="gram", basis_tag="kagn",
                                                            variant="bn", depth="11", version="4", inferred="opt")
    assert parse_model_name("resnet_kagn_moe18.in1k")["variant"] == "moe"
    assert parse_model_name("densenet_fastkan121")["basis"] == "rbf"
    assert parse_model_name("u2kanet_kagn_small")["variant"] == "small"
    assert parse_model_name("ukanet_kacn18")["depth"] == "18"
    assert parse_model_name("eight_simple_conv_wavkan")["family"] == "eight_simple_conv"
    for bad in ("resnet18", "vgg_kagn", "vgg_kgn11", "resnet_kagn_xx18", "ukanet_kagn", "simple_conv_kagn3",
                "kagn_vgg11", "vgg_kagn11_v", "VGG_kagn11", "vgg_kagn11_v4_op", "vgg_kagn11_opt_v4"):
        assert parse_model_name(bad) is None, bad


def test_list_models_lists_only_kanzoo_models():
    ours = sorted(n for n, fn in _model_entrypoints.items() if fn.__module__.startswith("kanzoo.models."))
    assert MODELS == ours, "kanzoo.list_models() must be exactly the entrypoints defined in kanzoo.models"
    assert "resnet18" not in MODELS and "vgg11" not in MODELS
    assert kanzoo.list_models("simple_conv_*") == sorted(n for n in MODELS if n.startswith("simple_conv_"))


def test_list_pretrained():
    listed = kanzoo.list_pretrained()
    for entry in listed:
        arch, tag = split_model_name_tag(entry)
        assert tag, f"{entry!r} has no tag"
        assert arch in MODELS, f"{entry!r} is not a kanzoo model"
        assert get_pretrained_cfg(entry).has_weights, f"{entry!r} listed without weights"
    with_weights = sorted(c for n in MODELS for c in get_arch_pretrained_cfgs(n)
                          if "." in c and get_pretrained_cfg(c).has_weights)
    assert listed == with_weights
    assert kanzoo.list_models(pretrained=True) == listed


def test_timm_create_model_builds_kanzoo_models():
    for name in MODELS:
        model = timm.create_model(name, device="meta")
        assert type(model).__module__.startswith("kanzoo.models."), name
    # in a fresh interpreter, importing kanzoo is all timm needs
    name = MODELS[0]
    out = _python(f"import kanzoo, timm, torch\n"
                  f"m = timm.create_model({name!r}, num_classes=3, width_scale=0.125).eval()\n"
                  f"print(type(m).__module__, m.num_classes)")
    assert out.split() == [type(kanzoo.create_model(name, device="meta")).__module__, "3"]


def test_unknown_name_suggests_close_names():
    name = MODELS[len(MODELS) // 2]
    typo = name[:3] + name[4:]  # one letter dropped
    with pytest.raises(UnknownModelError) as e:
        kanzoo.create_model(typo)
    msg = str(e.value)
    assert repr(typo) in msg and "closest registered names" in msg and name in msg, msg
    assert isinstance(e.value, RuntimeError) and isinstance(e.value, ValueError)


def test_unknown_tag_lists_the_tags():
    with pytest.raises(UnknownModelError, match=r"unknown pretrained tag 'nope'.*tags are"):
        kanzoo.create_model(f"{MODELS[0]}.nope")


def test_pretrained_without_weights_lists_tags_with_weights():
    no_weights = [n for n in MODELS if not kanzoo.list_pretrained(f"{n}.*")]
    assert no_weights
    with pytest.raises(RuntimeError) as e:
        kanzoo.create_model(no_weights[0], pretrained=True)
    msg = str(e.value)
    assert "no pretrained weights" in msg and "pretrained_cfg_overlay" in msg, msg
    for entry in kanzoo.list_pretrained()[:3]:
        assert entry in msg, f"{entry} missing from: {msg}"


def test_unknown_kwarg_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="bogus_option"):
        kanzoo.create_model(MODELS[0], bogus_option=3)
