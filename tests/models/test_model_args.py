"""Bad size-like arguments fail at construction with one ValueError that names the argument and the value, in
every family (issue 22): nothing builds a wrong model silently, nothing fails deep inside torch or timm."""
import math

import pytest
import torch

import kanzoo
from kanzoo.models._args import ARG_RULES, check_model_args
from tests.models.test_models_contract import REPRESENTATIVES, SEGMENTATION, build, randn

#: (argument, bad value): each breaks the rule every family gives the argument
BAD_ARGS = [
    ("num_classes", -1), ("num_classes", 2.5), ("num_classes", "10"), ("num_classes", True),
    ("in_chans", 0), ("in_chans", -3),
    ("width_scale", 0), ("width_scale", -1), ("width_scale", "2"), ("width_scale", math.nan),
    ("drop_rate", "0.1"), ("drop_rate", 1.5), ("drop_rate", -0.1), ("drop_path_rate", 1.0),
    ("img_size", 0), ("img_size", (224, -1)), ("patch_size", 0),
    ("depth", 0), ("depths", (0, 1)), ("depths", ()), ("widths", (0, 8)), ("layers", (2, 0, 2, 2)),
    ("embed_dim", 0), ("embed_dims", (0, 8, 8)), ("num_heads", 0), ("mlp_ratio", 0),
    ("growth_rate", 0), ("num_init_features", -4),
    ("global_pool", 3),
]
#: bad basis settings, given the way every family takes them
BAD_BASIS_ARGS = [("degree", -1), ("degree", 2.5), ("grid_size", 0), ("spline_order", -1)]


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_bad_size_args_name_argument_and_value(name):
    """Every family: each bad size raises ValueError naming the model, the argument and the value (before
    anything is built, so a family that does not take the argument reports the bad value all the same)."""
    for arg, value in BAD_ARGS:
        with pytest.raises(ValueError) as info:
            kanzoo.create_model(name, **{arg: value})
        msg = str(info.value)
        assert name in msg and f"{arg} must be" in msg and repr(value) in msg, (arg, value, msg)
        assert "\n" not in msg, msg
    for arg, value in BAD_BASIS_ARGS:
        with pytest.raises(ValueError, match=f"{arg} must be .*got {value!r}"):
            kanzoo.create_model(name, basis_kwargs={arg: value})


@pytest.mark.parametrize("name", [n for n in REPRESENTATIVES if n not in SEGMENTATION])
def test_unknown_global_pool(name):
    """An unknown pooling name is a ValueError naming it, not timm's AssertionError."""
    with pytest.raises(ValueError, match="global_pool='bogus' is not supported"):
        build(name, global_pool="bogus")


def test_valid_values_pass():
    """The rules accept what the families use: ints and pairs, 0 classes (features), probabilities, None."""
    check_model_args("m", dict(num_classes=0, in_chans=1, width_scale=0.25, img_size=(224, 192), patch_size=16,
                               depths=2, widths=[8, 16], drop_rate=0.0, drop_path_rate=0.1, mlp_ratio=4.0,
                               global_pool="", img_size_unknown_rule=-5, depth=None,
                               basis_kwargs=dict(degree=0, grid_size=1, spline_order=0)))


@pytest.mark.parametrize("arg", sorted(ARG_RULES))
def test_every_rule_rejects_a_bool_and_a_string(arg):
    """True/False are ints to Python but never a size or a rate; a string is never a number."""
    for value in (True, "x") if arg != "global_pool" else (True,):
        with pytest.raises(ValueError, match=f"{arg} must be"):
            check_model_args("m", {arg: value})


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_half_input_to_a_float_model_names_both_dtypes(name):
    """A float16 batch into a float32 model: one line naming both dtypes (kanzoo's KAN layers add what to do;
    the ViT and U-KAN stems are timm/torch convs, whose message already names input and bias types)."""
    model = build(name).eval()
    x = randn(name).half()
    with pytest.raises((TypeError, RuntimeError)) as info:
        with torch.no_grad():
            model(x)
    first = str(info.value).splitlines()[0]
    assert ("float16" in first and "float32" in first) or ("Half" in first and "float" in first), first
    if isinstance(info.value, TypeError):
        assert "autocast" in first, first
