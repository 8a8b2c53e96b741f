"""U-KAN's tokenized KAN block (Li et al., "U-KAN Makes Strong Backbone for Medical Image Segmentation and
Generation", arXiv 2406.02918), on the tokenized-MLP design of UNeXt (Valanarasu & Patel, arXiv 2203.04967)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from timm.layers import DropPath
from timm.models._manipulate import checkpoint
from torch import nn

from ._utils import is_symbolic
from .spline_linear import SplineKANLinear


class DWConvBNReLU(nn.Module):
    """Depthwise 3×3 conv (with bias), BatchNorm and ReLU on tokens (B, H·W, C) seen as an image (B, C, H, W).

    Token n is pixel (n // W, n % W) (row-major), as in U-KAN. Returns tokens (B, H·W, C).
    """

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim, **dd)
        self.bn = nn.BatchNorm2d(dim, **dd)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        x = x.transpose(1, 2).reshape(B, C, H, W)
        x = self.act(self.bn(self.dwconv(x)))
        return x.flatten(2).transpose(1, 2)


class TokenKANLayer(nn.Module):
    r"""U-KAN's ``KANLayer``: three rounds of [KAN linear → depthwise 3×3 conv → BatchNorm → ReLU] on tokens.

    .. math:: y = \prod_{i=3}^{1} \big(\mathrm{ReLU} \circ \mathrm{BN}_i \circ \mathrm{DW}_i \circ fc_i\big)(x)

    ``fc_i`` are :class:`~kanzoo.layers.SplineKANLinear` (dim → dim; U-KAN: G=5, K=3, range (-1, 1)), or,
    with ``kan=False``, ``nn.Linear(dim, dim)``: the MLP twin that U-KAN's ``no_kan`` flag was meant to build
    (its reference code never passes the flag on).

    Args:
        dim: token channels C (hidden width = C, as in U-KAN).
        kan: KAN linear layers (True) or plain linear layers (False).
        kan_kwargs: more :class:`SplineKANLinear` arguments (``grid_size``, ``spline_order``, ``grid_range``...).

    Shape:
        - Input: (B, H·W, C) plus H and W; output (B, H·W, C).
    """

    def __init__(self, dim: int, kan: bool = True, kan_kwargs: Optional[Dict[str, Any]] = None, device=None,
                 dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.kan = bool(kan)
        if kan:
            kw = dict(kan_kwargs or {})
            self.fc1 = SplineKANLinear(dim, dim, **kw, **dd)
            self.fc2 = SplineKANLinear(dim, dim, **kw, **dd)
            self.fc3 = SplineKANLinear(dim, dim, **kw, **dd)
        else:
            if kan_kwargs:
                raise ValueError(f"kan_kwargs {sorted(kan_kwargs)} given with kan=False (plain linear layers): drop "
                                 f"them or set kan=True")
            self.fc1 = nn.Linear(dim, dim, **dd)
            self.fc2 = nn.Linear(dim, dim, **dd)
            self.fc3 = nn.Linear(dim, dim, **dd)
        self.dwconv_1 = DWConvBNReLU(dim, **dd)
        self.dwconv_2 = DWConvBNReLU(dim, **dd)
        self.dwconv_3 = DWConvBNReLU(dim, **dd)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = self.dwconv_1(self.fc1(x), H, W)
        x = self.dwconv_2(self.fc2(x), H, W)
        return self.dwconv_3(self.fc3(x), H, W)


class TokenKANBlock(nn.Module):
    r"""U-KAN's tokenized KAN block: :math:`x + \mathrm{DropPath}(\mathrm{KANLayer}(\mathrm{LN}(x), H, W))`.

    ``grad_checkpointing = True`` recomputes the branch in backward instead of keeping its activations.

    Args:
        dim: token channels C.
        drop_path: stochastic depth rate of the residual branch.
        kan, kan_kwargs: see :class:`TokenKANLayer`.
        norm_eps: LayerNorm epsilon (U-KAN: 1e-5).

    Shape:
        - Input: (B, H·W, C) with token n = pixel (n // W, n % W), plus H and W; output (B, H·W, C).

    Examples::
        >>> block = TokenKANBlock(32)
        >>> block(torch.randn(2, 6 * 4, 32), 6, 4).shape
        torch.Size([2, 24, 32])
    """

    def __init__(self, dim: int, drop_path: float = 0.0, kan: bool = True,
                 kan_kwargs: Optional[Dict[str, Any]] = None, norm_eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **dd)  # U-KAN's name for it
        self.layer = TokenKANLayer(dim, kan=kan, kan_kwargs=kan_kwargs, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.grad_checkpointing = False

    def _branch(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return self.layer(self.norm2(x), H, W)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        if not is_symbolic(x) and (x.dim() != 3 or x.shape[1] != H * W or x.shape[2] != self.dim):
            raise ValueError(f"TokenKANBlock expects tokens (B, H·W, {self.dim}) with H·W = {H}·{W} = {H * W}, got "
                             f"shape {list(x.shape)}")
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return x + self.drop_path(checkpoint(self._branch, x, H, W))
        return x + self.drop_path(self._branch(x, H, W))
