"""kanzoo.layers: KAN bases and the layers built on them."""
from .bases import (
    Basis, BernsteinBasis, BSplineBasis, ChebyshevBasis, GramBasis, JacobiBasis, LegendreBasis, RBFBasis,
    ReLUBasis, WaveletBasis, compile_bases, create_basis, get_basis_class, list_bases, register_basis,
)
from .bottleneck import BottleneckKANConv1d, BottleneckKANConv2d, BottleneckKANConv3d, BottleneckKANConvNd
from .conv import KANConv1d, KANConv2d, KANConv3d, KANConvNd
from .create import create_act, create_norm, get_act_layer
from .linear import BottleneckKANLinear, KANLinear, WaveletKANLinear
from .wavelet_conv import WaveletKANConv1d, WaveletKANConv2d, WaveletKANConv3d, WaveletKANConvNd
from .attention import (
    KANFocalModulation, KANFocalModulation1d, KANFocalModulation2d, KANFocalModulation3d, KANSelfAttention,
    KANSelfAttention1d, KANSelfAttention2d, KANSelfAttention3d, MixedRoPE,
)
from .rational import (
    GRKANMlp, GroupRational, get_rational_kernel, group_rational, rational_init_modes, set_rational_kernel,
)
from .bases import RSWAFBasis
from .spline_linear import SplineKANLinear
from .tokenized import DWConvBNReLU, TokenKANBlock, TokenKANLayer
from .token_moe import FasterKAN, MoEKANMlp, fasterkan_linear
from .moe import (
    MoEBottleneckKANConv1d, MoEBottleneckKANConv2d, MoEBottleneckKANConv3d, MoEBottleneckKANConvNd, MoEKANConv1d,
    MoEKANConv2d, MoEKANConv3d, MoEKANConvNd,
)

__all__ = [
    "DWConvBNReLU",
    "FasterKAN",
    "MoEKANMlp",
    "RSWAFBasis",
    "SplineKANLinear",
    "TokenKANBlock",
    "TokenKANLayer",
    "BSplineBasis",
    "Basis",
    "BernsteinBasis",
    "BottleneckKANConv1d",
    "BottleneckKANConv2d",
    "BottleneckKANConv3d",
    "BottleneckKANConvNd",
    "BottleneckKANLinear",
    "ChebyshevBasis",
    "GramBasis",
    "GRKANMlp",
    "GroupRational",
    "JacobiBasis",
    "KANConv1d",
    "KANConv2d",
    "KANConv3d",
    "KANConvNd",
    "KANFocalModulation",
    "KANFocalModulation1d",
    "KANFocalModulation2d",
    "KANFocalModulation3d",
    "KANLinear",
    "KANSelfAttention",
    "KANSelfAttention1d",
    "KANSelfAttention2d",
    "KANSelfAttention3d",
    "LegendreBasis",
    "MixedRoPE",
    "MoEBottleneckKANConv1d",
    "MoEBottleneckKANConv2d",
    "MoEBottleneckKANConv3d",
    "MoEBottleneckKANConvNd",
    "MoEKANConv1d",
    "MoEKANConv2d",
    "MoEKANConv3d",
    "MoEKANConvNd",
    "RBFBasis",
    "ReLUBasis",
    "WaveletBasis",
    "WaveletKANConv1d",
    "WaveletKANConv2d",
    "WaveletKANConv3d",
    "WaveletKANConvNd",
    "WaveletKANLinear",
    "compile_bases",
    "fasterkan_linear",
    "create_act",
    "create_basis",
    "create_norm",
    "get_act_layer",
    "get_basis_class",
    "get_rational_kernel",
    "group_rational",
    "list_bases",
    "rational_init_modes",
    "register_basis",
    "set_rational_kernel",
]
from .selectable import (
    NotPrunedError, PrunedKANConvNd, PrunedKANLinear, SelectableKANConv1d, SelectableKANConv2d, SelectableKANConv3d,
    SelectableKANConvNd, SelectableKANLinear, check_exportable, prune_model, select_model, selectable_layers,
    selection_summary,
)

__all__ += [
    "NotPrunedError", "PrunedKANConvNd", "PrunedKANLinear", "SelectableKANConv1d", "SelectableKANConv2d",
    "SelectableKANConv3d", "SelectableKANConvNd", "SelectableKANLinear", "check_exportable", "prune_model",
    "select_model", "selectable_layers", "selection_summary",
]
