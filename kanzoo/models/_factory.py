"""``kanzoo.create_model`` and the listing functions, on top of timm's registry."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, List, Optional, Union

import timm
from timm.models import get_pretrained_cfg, is_model, split_model_name_tag
from timm.models._registry import _model_to_module, get_arch_pretrained_cfgs

from ..errors import UnknownModelError

#: python modules whose registered models are kanzoo's
_KANZOO_MODULE_PREFIX = "kanzoo.models."


def _is_kanzoo(name: str) -> bool:
    entry = timm.models._registry._model_entrypoints.get(name)
    return entry is not None and getattr(entry, "__module__", "").startswith(_KANZOO_MODULE_PREFIX)


def list_models(pattern: Union[str, List[str]] = "*", pretrained: bool = False) -> List[str]:
    """kanzoo's registered architectures matching ``pattern`` (fnmatch globs); ``pretrained=True`` lists
    only those with weights, as ``name.tag`` entries."""
    names = [n for n in timm.list_models(pretrained=pretrained) if _is_kanzoo(split_model_name_tag(n)[0])]
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns))


def list_pretrained(pattern: Union[str, List[str]] = "*") -> List[str]:
    """``name.tag`` entries of kanzoo models that have weights."""
    return list_models(pattern, pretrained=True)


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list_models(), n=5, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    return f"; closest registered names: {', '.join(close)}" if close else ""


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any):
    """Builds a kanzoo (or any timm) model by name, like ``timm.create_model``.

    ``model_name`` may carry a pretrained tag (``'vgg_kagn11_v4.tck_in1k'``) or be ``'hf-hub:org/repo'``.
    Keyword arguments go to the model (``num_classes``, ``in_chans``, ``drop_rate``, ``features_only``...)
    and to timm's factory (``pretrained_cfg_overlay=dict(file=...)``, ``checkpoint_path``...).
    """
    if not isinstance(model_name, str) or not model_name:
        raise UnknownModelError(f"model_name must be a non-empty string, got {model_name!r}")
    if ":" not in model_name:
        arch, tag = split_model_name_tag(model_name)
        if not is_model(arch):
            raise UnknownModelError(f"unknown model {arch!r}{_suggest(arch)}. `kanzoo list` shows all models")
        tags = [c.split(".", 1)[1] for c in get_arch_pretrained_cfgs(arch) if "." in c] if tag else []
        if tag and tag not in tags:
            raise UnknownModelError(f"unknown pretrained tag {tag!r} for {arch!r}; its tags are {tags}")
        if pretrained:
            cfg = get_pretrained_cfg(model_name)
            has_weights = cfg is not None and cfg.has_weights
            if not has_weights and not (kwargs.get("pretrained_cfg_overlay") or kwargs.get("pretrained_cfg")):
                with_weights = [n for n in list_models(f"{arch}.*", pretrained=True)]
                hint = (f"tags with weights: {with_weights}" if with_weights else
                        f"no {arch} tag has weights; models that do: {list_pretrained()[:10]}")
                if tag and cfg is not None and getattr(cfg, "metrics", None):
                    hint = (f"its published weights are not on the Hub yet (see model_cards/{model_name}.md): "
                            f"convert the authors' checkpoint with `kanzoo convert --from FAMILY FILE OUT` and "
                            f"load 'local-dir:OUT'")
                raise RuntimeError(f"{model_name!r} has no pretrained weights; {hint}. Use pretrained=False, or "
                                   f"give a file with pretrained_cfg_overlay=dict(file=...)")
    if model_name.startswith("hf-hub:"):
        return _create_from_hub(model_name, pretrained, **kwargs)
    return timm.create_model(model_name, pretrained=pretrained, **kwargs)


def _create_from_hub(model_name: str, pretrained: bool, **kwargs: Any):
    """``timm.create_model('hf-hub:org/repo')``, with the Hub's errors for its ``config.json`` turned into
    kanzoo's clear ones (the weights themselves go through :mod:`kanzoo.hub.download`)."""
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    from ..hub.download import WeightsNotFoundError, WeightsOfflineError, offline_message, split_hub_id

    repo_id, revision = split_hub_id(model_name[len("hf-hub:"):])
    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except LocalEntryNotFoundError as e:
        raise WeightsOfflineError(offline_message(None, repo_id, "config.json", revision)) from e
    except RepositoryNotFoundError as e:
        raise WeightsNotFoundError(f"no repo {repo_id!r} on the Hub (or it is private and no token was given): "
                                   f"check the name, or set HF_TOKEN for a private repo") from e
    except RevisionNotFoundError as e:
        raise WeightsNotFoundError(f"repo {repo_id!r} has no revision {revision!r}") from e
    except EntryNotFoundError as e:
        raise WeightsNotFoundError(f"repo {repo_id!r} has no config.json, so it is not a timm/kanzoo model repo; "
                                   f"load its weights into a named architecture with "
                                   f"pretrained_cfg_overlay=dict(hf_hub_id={repo_id!r})") from e
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise UnknownModelError(f"{model_name}: its config.json names an architecture that is not registered "
                                    f"({e}); it needs a newer kanzoo or another timm plugin") from e
        raise


def model_module(name: str) -> Optional[str]:
    return _model_to_module.get(split_model_name_tag(name)[0])

