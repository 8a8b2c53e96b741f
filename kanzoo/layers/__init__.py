"""kanzoo.layers: KAN bases and the layers built on them."""
from .bases import (
    Basis, BernsteinBasis, BSplineBasis, ChebyshevBasis, GramBasis, JacobiBasis, LegendreBasis, RBFBasis,
    ReLUBasis, WaveletBasis, create_basis, get_basis_class, list_bases, register_basis,
)
from .bottleneck import BottleneckKANConv1d, BottleneckKANConv2d, BottleneckKANConv3d, BottleneckKANConvNd
from .conv import KANConv1d, KANConv2d, KANConv3d, KANConvNd
from .create import create_norm, get_act_layer
