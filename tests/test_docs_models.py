"""docs/models.md lists exactly the registered models (its generated block is up to date)."""
import importlib.util
import os
import re

import kanzoo
from tests import support

REPO = str(support.REPO)



def _gen():
    spec = importlib.util.spec_from_file_location("gen_models", os.path.join(REPO, "docs", "gen_models.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_models_doc_is_up_to_date():
    gen = _gen()
    with open(gen.DOC, encoding="utf-8") as f:
        text = f.read()
    assert gen.splice(text, gen.render()) == text, "docs/models.md is stale: run python docs/gen_models.py"
    block = text.split(gen.BEGIN, 1)[1].split(gen.END, 1)[0]
    listed = sorted(re.findall(r"^\| `([a-z0-9_]+)` \| [a-z]+ \| (?:classification|segmentation) \|", block, re.M))
    assert listed == kanzoo.list_models()


def test_scheme_in_doc_matches_naming_module():
    from kanzoo.models._naming import SCHEME
    with open(os.path.join(REPO, "docs", "models.md"), encoding="utf-8") as f:
        text = f.read()
    for readable, _ in SCHEME.values():
        for part in readable.split(", "):
            assert f"`{part.replace('|', chr(92) + '|')}`" in text, part
