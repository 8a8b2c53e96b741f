"""Gram polynomial basis (KAGN), from "Kolmogorov-Arnold Convolutions: Design Principles and Empirical
Studies" (Drokin, arXiv 2407.01092)."""
from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..create import LayerType, get_act_layer
from .base import act_flops, check_degree
from .recurrence import ThreeTermBasis


def gram_coefficients(degree: int) -> List[float]:
    """c_i for i = 0..degree, where P_i = t·P_{i-1} - c_i·β_{i-1}·P_{i-2} (c_0 = c_1 = 0).

    c_i = (2i-1)(i-1)²(4(i-1)²-1) / i², computed in double precision (c_2 = 2.25, c_3 = 33.33…).
    """
    out = [0.0, 0.0]
    for i in range(2, degree + 1):
        n, m = i - 1, i
        out.append(((m + n) * (m - n) * n**2) / (m**2 / (4.0 * n**2 - 1.0)))
    return out[: degree + 1]


#: the largest initial standard deviation of a recurrence coefficient c_i·β_{i-1} (GramBasis.reset_parameters)
INIT_MAX_COEF_STD = 0.5


class GramBasis(ThreeTermBasis):
    r"""Learnable Gram polynomials of :math:`t = \tanh(x)`, passed through an activation.

    .. math::
        P_0 = 1,\quad P_1 = t,\quad P_i = t\,P_{i-1} - c_i\,\beta_{i-1}\,P_{i-2},\qquad
        B_i(x) = \sigma(P_i(\tanh x))

    with :math:`c_i = (2i-1)(i-1)^2(4(i-1)^2-1)/i^2` and σ = ``act_layer`` (SiLU). Only
    :math:`\beta_1..\beta_{D-1}` enter the recurrence; ``beta_weights`` keeps D+1 entries so that
    torch-conv-kan checkpoints load unchanged.

    Args:
        degree: highest polynomial degree D (``num_basis = D + 1``). Degree 0 gives the constant σ(1).
        act_layer: activation applied to every basis function.

    Attributes:
        beta_weights: (D+1,) recurrence weights, initialised N(0, 1/(fan_in·(D+1))²), the high-degree ones
            shrunk so that the recurrence does not blow up at initialisation (see :meth:`reset_parameters`).
    """

    name = "gram"
    model_tag = "kagn"
    polynomial = True
    adaptable = True
    shape_param = "beta_weights"
    upstream_names = {"conv": "KAGN", "bottleneck": "BottleNeckKAGN", "linear": "KAGN-linear"}

    def __init__(
        self,
        degree: int = 3,
        act_layer: LayerType = "silu",
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.degree = check_degree(degree)
        self.num_basis = degree + 1
        self.act = get_act_layer(act_layer)()
        self.coefficients = gram_coefficients(degree)
        self.a = [1.0] * (degree + 1)
        self.b = [0.0] * (degree + 1)
        self.beta_weights = nn.Parameter(torch.empty(degree + 1, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self, fan_in: int = 1) -> None:
        r"""β ~ N(0, σ²) with σ = 1/(fan_in·(D+1)) as in torch-conv-kan, except that each β_{i-1} is shrunk so
        that its recurrence coefficient :math:`c_i\beta_{i-1}` has a standard deviation of at most
        ``INIT_MAX_COEF_STD`` (1/2): :math:`\sigma_{i-1} = \min(\sigma, 0.5/c_i)`.

        c_i grows like 8i³, so with the plain draw the recurrence grows geometrically at initialisation from
        degree ~10 on: a Gram model of degree 20 gave logits of 1e6, degree 50 NaN. With the cap, random-init
        outputs keep the scale of degree 3 up to degree 50 (``tests/layers/test_layer_numerics.py``). Low
        degrees with large fan-ins draw exactly the reference's values.
        """
        with torch.no_grad():
            sigma = 1.0 / (fan_in * (self.degree + 1.0))
            nn.init.normal_(self.beta_weights, mean=0.0, std=sigma)
            coef = gram_coefficients(self.degree + 1)
            scale = [min(1.0, INIT_MAX_COEF_STD / (coef[j + 1] * sigma)) if coef[j + 1] > 0 else 1.0
                     for j in range(self.degree + 1)]
            self.beta_weights.mul_(torch.tensor(scale, dtype=self.beta_weights.dtype,
                                                device=self.beta_weights.device))

    def squash(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    def recurrence(self, t: torch.Tensor) -> Tuple[List[float], List[float], torch.Tensor]:
        coef = torch.tensor(self.coefficients, dtype=t.dtype, device=t.device)
        beta = self.beta_weights.to(t.dtype)
        c = coef * torch.cat([beta[:1] * 0.0, beta[:-1]])  # c_i = coef_i · β_{i-1}
        return self.a, self.b, c

    @classmethod
    def flops(cls, degree: int = 3, act_layer: LayerType = "silu", **_: object) -> int:
        r"""tanh (6), :math:`P_i = t P_{i-1} - c_i\beta_{i-1} P_{i-2}` (3 each), the activation on
        :math:`P_1..P_D` (σ(P_0) is a constant): :math:`6 + 3\max(D-1,0) + F_{act} D`."""
        d = check_degree(degree)
        return 6 + 3 * max(d - 1, 0) + act_flops(act_layer) * d

    def flops_per_scalar(self) -> int:
        return self.flops(self.degree, self.act)

    def raised(self, extra: int) -> "GramBasis":
        beta = self.beta_weights
        new = GramBasis(self.degree + extra, device=beta.device, dtype=beta.dtype)
        new.act = copy.deepcopy(self.act)
        return new

    @classmethod
    def shape_param_index(cls, degree: int) -> Optional[int]:
        # P_d = t·P_{d-1} - c_d·β_{d-1}·P_{d-2} for d >= 2; P_0 and P_1 have no β
        return degree - 1 if degree >= 2 else None

    def extra_repr(self) -> str:
        return f"degree={self.degree}"
