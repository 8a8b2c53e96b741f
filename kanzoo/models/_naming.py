"""kanzoo's model naming scheme, written once: the tests, ``docs/models.md`` and the CLI read it from here.

=======================================================  =========================================
pattern                                                  examples
=======================================================  =========================================
``{family}_{basis}[_bn|_moe]{depth}[sa][_v{n}][_opt]``    ``vgg_kagn11_v4``, ``resnet_kagn_bn50``,
  family: ``vgg``, ``resnet``, ``densenet``               ``densenet_kacn121``, ``vgg_kagn_bn11_v4_opt``
``simple_conv_{basis}``, ``eight_simple_conv_{basis}``    ``simple_conv_kagn``
``ukanet_{basis}{depth}``                                 ``ukanet_kagn3``
``u2kanet_{basis}[_small]``                               ``u2kanet_kagn_small``
``ukan_{size}`` (B-spline KAN blocks)                     ``ukan_small``, ``ukan_large``
``mlp_kan_{size}_patch{p}_{img}`` (RSWAF experts)         ``mlp_kan_tiny_patch16_224``
``vision_kan_{size}[_h{H}]_patch{p}_{img}`` (RSWAF MLPs)  ``vision_kan_tiny_h384_patch16_224``
``kat_{size}[_gelu|_swish]_patch{p}_{img}`` (GR-KAN)      ``kat_tiny_patch16_224``
=======================================================  =========================================

``{basis}`` is one of the basis tags of :data:`kanzoo.models._base.BASIS_TAGS` (``kagn``: Gram,
``kaln``: Legendre, ``kacn``: Chebyshev, ``kajn``: Jacobi, ``kabn``: Bernstein, ``kan``: B-spline,
``fastkan``: Gaussian RBF, ``wavkan``: wavelet, ``relukan``: ReLU-KAN). ``_bn`` marks the variant with a
bottleneck KAN conv, ``_moe`` the mixture-of-experts variant, ``sa`` a self-attention block in place of the
last conv, ``_h{H}`` a KAN hidden width H other than the default (Vision-KAN's 384/768), ``_v{n}`` a
revision of an architecture (torch-conv-kan's ``VGG..._v2``/``_v4``), ``_opt`` the architecture kanzoo infers for
torch-conv-kan's ``brivangl/vgg_kagn_bn11_v4_opt`` checkpoint (width 3, a 3×3 flatten head; upstream does not
say what "opt" means; inferred, so it has no tag). Pretrained weights are tags: ``name.{recipe}_{dataset}``.
"""
import re
from typing import Dict, Optional

from ._base import BASIS_TAGS

__all__ = ["CNN_FAMILIES", "NAME_PATTERNS", "SCHEME", "parse_model_name"]

#: classification families that follow ``{family}_{basis}[_bn|_moe]{depth}[sa][_v{n}][_opt]``
CNN_FAMILIES = ("vgg", "resnet", "densenet")

# longest tag first, so that an alternation never stops at a tag that prefixes another one
_BASIS = "|".join(sorted(map(re.escape, BASIS_TAGS), key=lambda t: (-len(t), t)))

#: scheme name -> (readable form, regex with named groups family/basis/variant/depth/version)
SCHEME: Dict[str, tuple] = {
    "cnn": ("{family}_{basis}[_bn|_moe]{depth}[sa][_v{n}][_opt]",
            rf"(?P<family>{'|'.join(CNN_FAMILIES)})_(?P<basis>{_BASIS})(?:_(?P<variant>bn|moe))?"
            rf"(?P<depth>\d+)(?P<attention>sa)?(?:_v(?P<version>\d+))?(?:_(?P<inferred>opt))?"),
    "simple_conv": ("simple_conv_{basis}, eight_simple_conv_{basis}",
                    rf"(?P<family>simple_conv|eight_simple_conv)_(?P<basis>{_BASIS})"),
    "ukanet": ("ukanet_{basis}{depth}", rf"(?P<family>ukanet)_(?P<basis>{_BASIS})(?P<depth>\d+)"),
    "u2kanet": ("u2kanet_{basis}[_small]", rf"(?P<family>u2kanet)_(?P<basis>{_BASIS})(?:_(?P<variant>small))?"),
    "s_convkan": ("s_convkan_{size}", r"(?P<family>s_convkan)_(?P<variant>tiny|small|base)"),
    "ukan": ("ukan_{size}", r"(?P<family>ukan)_(?P<variant>small|base|large)"),
    "mlp_kan": ("mlp_kan_{size}_patch{p}_{img}",
                r"(?P<family>mlp_kan)_(?P<variant>tiny|small|base)_patch(?P<patch>\d+)_(?P<img_size>\d+)"),
    "vision_kan": ("vision_kan_{size}[_h{H}]_patch{p}_{img}",
                   r"(?P<family>vision_kan)_(?P<variant>tiny|small|base)(?:_h(?P<hidden>\d+))?_patch(?P<patch>\d+)"
                   r"_(?P<img_size>\d+)"),
    "kat": ("kat_{size}[_gelu|_swish]_patch{p}_{img}",
            r"(?P<family>kat)_(?P<variant>tiny|small|base)(?:_(?P<act_init>gelu|swish))?_patch(?P<patch>\d+)"
            r"_(?P<img_size>\d+)"),
}

#: schemes whose names carry no basis tag -> what ``parse_model_name`` reports as ``basis``
#: (``'selectable'``: every layer chooses among a pool of bases, :mod:`kanzoo.layers.selectable`; U-KAN's KAN
#: linears are B-splines, MLP-KAN's KAN experts and Vision-KAN's block MLPs RSWAF/FasterKAN)
FIXED_BASIS: Dict[str, str] = {"s_convkan": "selectable", "ukan": "bspline", "mlp_kan": "rswaf", "vision_kan": "rswaf",
                               "kat": "rational"}

#: the compiled, anchored regexes of :data:`SCHEME`
NAME_PATTERNS: Dict[str, "re.Pattern[str]"] = {k: re.compile(rf"^{rx}$") for k, (_, rx) in SCHEME.items()}


def parse_model_name(name: str) -> Optional[Dict[str, str]]:
    """Splits a kanzoo model name (a ``.tag`` suffix is ignored) into its scheme parts.

    Returns ``None`` for a name outside the scheme, otherwise a dict with ``scheme``, ``family``, ``basis``
    (the basis name, e.g. ``'gram'``), ``basis_tag`` and, where the name has them, ``variant``, ``depth``,
    ``attention`` (``'sa'``), ``version`` and ``inferred`` (``'opt'``).

    >>> parse_model_name('vgg_kagn_bn11_v4')['basis'], parse_model_name('vgg_kagn_bn11_v4')['depth']
    ('gram', '11')
    >>> parse_model_name('resnet18') is None
    True
    """
    arch = name.split(".", 1)[0]
    for scheme, rx in NAME_PATTERNS.items():
        m = rx.match(arch)
        if m:
            parts = {k: v for k, v in m.groupdict().items() if v is not None}
            parts["basis_tag"] = parts.pop("basis", None)
            basis = FIXED_BASIS[scheme] if parts["basis_tag"] is None else BASIS_TAGS[parts["basis_tag"]]
            return dict(scheme=scheme, basis=basis, **parts)
    return None

