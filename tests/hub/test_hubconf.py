"""hubconf.py: one torch.hub entrypoint per kanzoo model, generated from the registry.

torch 2.14's ``torch.hub.list``/``help`` take only a GitHub ``owner/repo`` (they download it into the hub
cache); ``torch.hub.load(dir, name, source='local')`` is the only local entry. The list/help tests run the
real torch.hub functions with the download step (``torch.hub._get_cache_or_reload``) pointed at this checkout.
"""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

import kanzoo
from tests import support

REPO = str(support.REPO)

MODELS = kanzoo.list_models()


@pytest.fixture
def local_github(monkeypatch):
    """torch.hub's GitHub code paths, served from this checkout instead of a download."""
    seen = []

    def fake_get_cache_or_reload(github, *args, **kwargs):
        seen.append(github)
        return REPO

    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", fake_get_cache_or_reload)
    return seen


def _hubconf():
    spec = importlib.util.spec_from_file_location("kanzoo_hubconf_under_test", os.path.join(REPO, "hubconf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_list_has_every_model_and_nothing_else(local_github):
    entrypoints = torch.hub.list("kanzoo/kanzoo", trust_repo=True)
    assert local_github == ["kanzoo/kanzoo"]
    assert sorted(entrypoints) == MODELS


def test_dependencies_are_importable():
    hub = _hubconf()
    assert hub.dependencies[:2] == ["torch", "timm"]
    missing = [d for d in hub.dependencies if importlib.util.find_spec(d) is None]
    assert not missing, missing


def test_entrypoints_are_generated_with_docstrings():
    hub = _hubconf()
    for name in MODELS:
        fn = getattr(hub, name)
        assert fn.__name__ == name and callable(fn)
        assert fn.__doc__.startswith(name) and "pretrained" in fn.__doc__, name
    weighted = kanzoo.list_pretrained()
    if weighted:  # a model with weights names them, with the Hub repo they come from
        arch = weighted[0].split(".")[0]
        from timm.models import get_pretrained_cfg
        assert weighted[0] in getattr(hub, arch).__doc__
        assert get_pretrained_cfg(weighted[0]).hf_hub_id in getattr(hub, arch).__doc__


def test_help_shows_the_docstring(local_github):
    name = MODELS[0]
    doc = torch.hub.help("kanzoo/kanzoo", name, trust_repo=True)
    import inspect

    from timm.models import model_entrypoint
    assert doc.startswith(inspect.cleandoc(model_entrypoint(name).__doc__))
    assert "kanzoo.create_model" in doc


@pytest.mark.parametrize("name", sorted({MODELS[0], MODELS[-1], *kanzoo.list_models("resnet_*18")[:1]}))
def test_load_local_builds_the_model(name):
    model = torch.hub.load(REPO, name, source="local", num_classes=3, width_scale=0.125)
    ref = kanzoo.create_model(name, num_classes=3, width_scale=0.125)
    assert type(model) is type(ref) and model.num_classes == 3
    assert model.pretrained_cfg["architecture"] == name
    assert [k for k in model.state_dict()] == [k for k in ref.state_dict()]


def test_load_local_forwards_errors():
    with pytest.raises(TypeError, match="not_an_option"):
        torch.hub.load(REPO, MODELS[0], source="local", not_an_option=1)
    no_weights = [n for n in MODELS if not kanzoo.list_pretrained(f"{n}.*")][0]
    with pytest.raises(RuntimeError, match="no pretrained weights"):
        torch.hub.load(REPO, no_weights, source="local", pretrained=True)
    with pytest.raises(RuntimeError, match="Cannot find callable"):
        torch.hub.load(REPO, "resnet18", source="local")  # timm's own models are not kanzoo's entrypoints


def test_hubconf_imports_kanzoo_from_its_checkout():
    """In a fresh interpreter started elsewhere, torch.hub.load of this folder uses this folder's kanzoo."""
    code = ("import sys, torch\n"
            f"m = torch.hub.load({REPO!r}, {MODELS[0]!r}, source='local', num_classes=2, width_scale=0.125)\n"
            "import kanzoo\n"
            "print(kanzoo.__file__, m.num_classes)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/",
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    path, num_classes = out.stdout.split()
    assert path == os.path.join(REPO, "kanzoo", "__init__.py") and num_classes == "2"
