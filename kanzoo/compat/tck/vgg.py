"""torch-conv-kan VGGs (``models.vggkan.VGGKAGN`` / ``VGGKAGN_BN``) -> :class:`kanzoo.models.vgg_kan.VGGKAN`.

This module turns a reference VGG description into :class:`~kanzoo.models.vgg_kan.VGGKAN` arguments. The key
conversion is the model's own (its checkpoint filter reads torch-conv-kan weights): ``features.{i}`` maps to
kanzoo's ``features.{i}`` and ``classifier.1`` to ``head.fc``; see :func:`kanzoo.models.vgg_kan.convert_vgg_state`,
re-exported here with :func:`convert_vgg_reader` and :func:`is_reference_vgg_state`.
"""
from __future__ import annotations

from typing import Any, Dict

from ...models.vgg_kan import VGGKAN, convert_vgg_reader, convert_vgg_state, is_reference_vgg_state
from ._args import class_name

__all__ = ["FAMILY", "FAMILY_PATTERNS", "build_vgg", "convert_vgg_reader", "convert_vgg_state",
           "is_reference_vgg_state", "vgg_kwargs"]

FAMILY = "VGG-KAGN"
FAMILY_PATTERNS = [(r"^VGGKAGN(_BN)?$", FAMILY)]


def vgg_kwargs(case: Dict[str, Any]) -> Dict[str, Any]:
    """:class:`~kanzoo.models.vgg_kan.VGGKAN` arguments for a ``VGGKAGN``/``VGGKAGN_BN`` description.

    Positional arguments are ``(input_channels, num_classes)``; they may also come as keywords, as in the
    hub ``config.json``. ``norm_layer`` is not in that file: pass it for the BN checkpoints.
    ``expected_feature_shape`` (h, w) (the reference's default is (7, 7)) becomes ``head_pool_size``: (1, 1) is
    the global average pool of the published checkpoints, anything larger the flatten head of
    :class:`~kanzoo.models._base.FlattenClassifierHead` (``AdaptiveAvgPool2d((h, w))``, channel-major flatten,
    ``Linear(C·h·w → num_classes)``), as the reference builds it.
    """
    ref = case["ref_class"]
    if ref not in ("VGGKAGN", "VGGKAGN_BN"):
        raise ValueError(f"unsupported torch-conv-kan VGG class {ref!r}; supported: VGGKAGN, VGGKAGN_BN")
    a = dict(zip(["input_channels", "num_classes"], case.get("ctor_args", [])))
    a.update(case.get("ctor_kwargs", {}))
    head = a.pop("head_type", "Linear")
    if head != "Linear":
        raise ValueError(f"{ref}: head_type={head!r} is not supported; kanzoo's VGG head is 'Linear'")
    shape = a.pop("expected_feature_shape", (7, 7))
    if (not isinstance(shape, (list, tuple)) or len(shape) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise ValueError(f"{ref}: expected_feature_shape must be a pair [h, w] of ints >= 1, got {shape!r}")
    kw: Dict[str, Any] = dict(
        in_chans=a.pop("input_channels"), num_classes=a.pop("num_classes"), cfg=a.pop("vgg_type", "VGG11"),
        basis="gram", basis_kwargs={"degree": a.pop("degree", 3)}, bottleneck=ref == "VGGKAGN_BN",
        width_scale=a.pop("width_scale", 1), groups=a.pop("groups", 1),
        norm_layer=class_name(a.pop("norm_layer", "torch.nn.InstanceNorm2d")),
        norm_kwargs={"affine": a.pop("affine", False)}, dropout=a.pop("dropout", 0.0),
        drop_rate=a.pop("dropout_linear", 0.25), last_attention=a.pop("last_attention", False),
        attn_inner_reduction=a.pop("sa_inner_projection", None), attn_kwargs={"scale": 1.0},
        head_pool_size=(int(shape[0]), int(shape[1])),
    )
    a.pop("l1_decay", None)
    if a:
        raise ValueError(f"{ref}: arguments kanzoo does not understand: {sorted(a)}")
    return kw


def build_vgg(case: Dict[str, Any]) -> VGGKAN:
    return VGGKAN(**vgg_kwargs(case))
