"""Bad arguments and bad inputs give a ValueError that names the argument and echoes the bad value (or, for
a forward, says what was expected and what was got) instead of an opaque error from deep inside torch."""
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kanzoo.layers import (
    BottleneckKANConvNd,
    KANConv1d,
    KANConv2d,
    KANConv3d,
    KANConvNd,
    create_basis,
    create_norm,
)
from tests.support.kan_layer_cases import BASES, POLY_BASES, single_thread, small_kwargs

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)

LAYERS = [KANConvNd, BottleneckKANConvNd]
FEW = settings(max_examples=15, deadline=None, database=None)


def raises_naming(name, value):
    """pytest.raises(ValueError) whose message has ``name`` and then ``value`` (as written by repr)."""
    return pytest.raises(ValueError, match=rf"\b{re.escape(name)}\b.*{re.escape(repr(value))}")


# --- groups ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", LAYERS)
@FEW
@given(cin=st.integers(1, 12), cout=st.integers(1, 12), groups=st.integers(2, 12))
def test_groups_not_dividing_channels(cls, cin, cout, groups):
    if cin % groups == 0 and cout % groups == 0:
        layer = cls(cin, cout, 1, groups=groups, ndim=1, min_internal=1) if cls is BottleneckKANConvNd \
            else cls(cin, cout, 1, groups=groups, ndim=1)
        assert layer.groups == groups  # valid combinations still build
        return
    with pytest.raises(ValueError, match=rf"\bgroups={groups}\b") as info:
        cls(cin, cout, 3, groups=groups)
    msg = str(info.value)
    # which channel count is not divisible is named with its value too
    bad = [f"in_channels={cin}"] if cin % groups else []
    bad += [f"out_channels={cout}"] if cout % groups else []
    assert all(b in msg for b in bad), msg


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("groups", [0, -2])
def test_groups_not_positive(cls, groups):
    with raises_naming("groups", groups):
        cls(4, 4, 3, groups=groups)


# --- degree ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("basis", POLY_BASES)
@pytest.mark.parametrize("cls", LAYERS)
@settings(max_examples=4, deadline=None, database=None)
@given(degree=st.integers(-50, -1))
def test_negative_degree(basis, cls, degree):
    with raises_naming("degree", degree):
        cls(4, 4, 3, basis=basis, degree=degree)


@pytest.mark.parametrize("basis", POLY_BASES)
@pytest.mark.parametrize("degree", [2.5, True])
def test_non_integer_degree(basis, degree):
    with raises_naming("degree", degree):
        create_basis(basis, 4, degree=degree)


# --- kernel size and the other conv arguments --------------------------------------------------------------

@pytest.mark.parametrize("cls", LAYERS)
@FEW
@given(ndim=st.sampled_from([1, 2, 3]), bad=st.integers(-5, 0), as_tuple=st.booleans(), pos=st.integers(0, 2))
def test_kernel_size_not_positive(cls, ndim, bad, as_tuple, pos):
    if as_tuple:
        k = [3] * ndim
        k[pos % ndim] = bad
        k = tuple(k)
    else:
        k = bad
    with raises_naming("kernel_size", k):
        cls(4, 4, k, ndim=ndim)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("name,value", [("stride", 0), ("stride", (1, -1)), ("padding", -1),
                                        ("dilation", 0), ("kernel_size", (3, 3, 3))])
def test_bad_conv_arguments(cls, name, value):
    kw = dict(kernel_size=3)
    kw[name] = value
    with raises_naming(name, value):
        cls(4, 4, ndim=2, **kw)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("ndim", [0, 4])
def test_bad_ndim(cls, ndim):
    with raises_naming("ndim", ndim):
        cls(4, 4, 3, ndim=ndim)


@pytest.mark.parametrize("cls", LAYERS)
def test_bad_dropout(cls):
    with raises_naming("dropout", 1.5):
        cls(4, 4, 3, dropout=1.5)


# --- names: basis, norm ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("name", ["foo", "Gramm", "b-spline"])
def test_unknown_basis(cls, name):
    with pytest.raises(ValueError, match=rf"\bbasis\b.*{re.escape(repr(name))}") as info:
        cls(4, 4, 3, basis=name)
    # and it lists what is available
    assert all(b in str(info.value) for b in BASES)


@pytest.mark.parametrize("basis", ["gram", "rbf", "wavelet"])
def test_basis_name_is_case_insensitive(basis):
    layer = KANConvNd(2, 2, 1, ndim=1, basis=basis.upper(), **small_kwargs(basis))
    assert type(layer.basis) is type(create_basis(basis, 2, **small_kwargs(basis)))


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("name", ["foo", "batchnorm", "inst"])
def test_unknown_norm(cls, name):
    with raises_naming("norm_layer", name) as info:
        cls(4, 4, 3, norm_layer=name)
    assert all(n in str(info.value) for n in ("batch", "instance", "group", "layer", "none"))


def test_unknown_basis_norm_names_its_argument():
    with raises_naming("basis_norm", "bogus"):
        KANConvNd(4, 4, 3, basis="rbf", basis_norm="bogus")


def test_unknown_basis_norm_is_a_value_error_with_the_value():
    with pytest.raises(ValueError, match="'bogus'"):
        KANConvNd(4, 4, 3, basis="rbf", basis_norm="bogus")


@pytest.mark.parametrize("ndim", [0, 1, 2, 3])
def test_unknown_norm_create_norm(ndim):
    with raises_naming("norm_layer", "bogus"):
        create_norm("bogus", 4, ndim)


@pytest.mark.parametrize("arg", ["act_layer", "base_act"])
def test_unknown_activation_echoes_value(arg):
    with pytest.raises(ValueError, match=r"activation.*'bogus_act'"):
        KANConvNd(4, 4, 3, **{arg: "bogus_act"})


@pytest.mark.parametrize("basis,kw,name", [
    ("bspline", dict(grid_size=0), "grid_size"),
    ("bspline", dict(spline_order=-1), "spline_order"),
    ("bspline", dict(grid_range=(1.0, -1.0)), "grid_range"),
    ("rbf", dict(grid_size=1), "grid_size"),
    ("wavelet", dict(wavelet_type="haar"), "wavelet_type"),
    ("wavelet", dict(num_wavelets=0), "num_wavelets"),
    ("legendre", dict(minmax="global"), "minmax"),
    ("relu", dict(g=0), "g"),
])
def test_bad_basis_arguments(basis, kw, name):
    (value,) = kw.values()
    with raises_naming(name, value):
        KANConvNd(4, 4, 3, basis=basis, **kw)


def test_unexpected_basis_argument_names_the_basis():
    with pytest.raises(TypeError, match="GramBasis.*grid_size"):
        KANConvNd(4, 4, 3, basis="gram", grid_size=5)


# --- forward: wrong channels / rank ------------------------------------------------------------------------

def _layers(cin, ndim):
    return [KANConvNd(cin, 4, 1, ndim=ndim, norm_layer="none"),
            BottleneckKANConvNd(cin, 4, 1, ndim=ndim, norm_layer="none", min_internal=2)]


@FEW
@given(ndim=st.sampled_from([1, 2, 3]), cin=st.integers(1, 6), got=st.integers(1, 6))
def test_forward_wrong_channel_count(ndim, cin, got):
    x = torch.randn(2, got, *([3] * ndim))
    for layer in _layers(cin, ndim):
        if got == cin:
            assert layer(x).shape == (2, 4) + (3,) * ndim
            continue
        with pytest.raises(ValueError, match=rf"expects {cin} input channels, got {got}\b") as info:
            layer(x)
        assert str(list(x.shape)) in str(info.value)


@FEW
@given(ndim=st.sampled_from([1, 2, 3]), rank=st.integers(1, 6))
def test_forward_wrong_number_of_dims(ndim, rank):
    x = torch.randn(*([2] * rank))
    for layer in _layers(2, ndim):
        if rank == ndim + 2:
            assert layer(x).shape[:2] == (2, 4)
            continue
        # expected rank and the shape that was got, e.g. "expects a 4-d input (N, C, H, W), got shape [2, 2]"
        shape = re.escape(str(list(x.shape)))
        with pytest.raises(ValueError, match=rf"expects a {ndim + 2}-d input.*got shape {shape}"):
            layer(x)


@pytest.mark.parametrize("cls,ndim,axes", [(KANConv1d, 1, "(N, C, L)"), (KANConv2d, 2, "(N, C, H, W)"),
                                           (KANConv3d, 3, "(N, C, D, H, W)")])
def test_forward_wrong_rank_names_layout(cls, ndim, axes):
    layer = cls(3, 3, 1)
    x = torch.randn(2, 3, *([4] * (ndim + 1)))
    with pytest.raises(ValueError, match=re.escape(axes)):
        layer(x)


def test_forward_error_is_not_an_opaque_conv_error():
    """The check runs before the convolution: no torch RuntimeError about weights or groups leaks out."""
    layer = KANConvNd(4, 8, 3, groups=2, padding=1)
    for x in (torch.randn(1, 6, 5, 5), torch.randn(1, 4, 5), torch.randn(4, 5, 5)):
        with pytest.raises(ValueError) as info:
            layer(x)
        assert "weight" not in str(info.value) and "groups" not in str(info.value)
    assert math.prod(layer(torch.randn(1, 4, 5, 5)).shape) == 8 * 25


@pytest.mark.parametrize("cls", [KANConvNd, BottleneckKANConvNd])
def test_input_smaller_than_kernel_is_a_clear_error(cls):
    layer = cls(4, 4, 5, dilation=2)
    with pytest.raises(ValueError, match=r"spatial size \[6, 6\].*needs at least 9"):
        layer(torch.randn(1, 4, 6, 6))
    assert layer(torch.randn(1, 4, 10, 10)).shape == (1, 4, 2, 2)


@pytest.mark.parametrize("cls", [KANConvNd, BottleneckKANConvNd])
@pytest.mark.parametrize("x_dtype,w_dtype", [(torch.float16, torch.float32), (torch.float64, torch.float32),
                                             (torch.float32, torch.float64)])
def test_input_dtype_other_than_the_weights(cls, x_dtype, w_dtype):
    """One TypeError naming both dtypes and the three ways out, instead of torch's 'expected scalar type'."""
    layer = cls(4, 4, 3, padding=1, dtype=w_dtype)
    x = torch.randn(1, 4, 5, 5).to(x_dtype)
    name_x, name_w = str(x_dtype).split(".")[1], str(w_dtype).split(".")[1]
    with pytest.raises(TypeError, match=f"got a {name_x} input but its weights are {name_w}.*autocast"):
        layer(x)


@pytest.mark.parametrize("cls", [KANConvNd, BottleneckKANConvNd])
def test_autocast_input_passes_the_dtype_check(cls):
    layer = cls(4, 4, 3, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(1, 4, 5, 5).bfloat16())
    assert out.shape == (1, 4, 5, 5) and torch.isfinite(out.float()).all()
