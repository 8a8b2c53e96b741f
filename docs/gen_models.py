"""Writes the generated part of docs/models.md from timm's registry: the basis tags and one table per family.

    python docs/gen_models.py           # rewrite the block between the markers in docs/models.md
    python docs/gen_models.py --check   # exit 1 if docs/models.md is out of date (tests/test_docs_models.py)

Everything is derived from what ``import kanzoo`` registers: family = the python module under
``kanzoo.models``, its summary = the module docstring's first paragraph, parameters counted on the meta
device (nothing is allocated), tags from the pretrained cfgs.
"""
import argparse
import os
import sys
from typing import List

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models.md")
BEGIN = "<!-- BEGIN GENERATED: python docs/gen_models.py -->"
END = "<!-- END GENERATED -->"


def _kanzoo():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if repo not in sys.path:
        sys.path.insert(0, repo)
    import kanzoo
    return kanzoo


def _summary(module_doc: str) -> str:
    return " ".join((module_doc or "").strip().split("\n\n")[0].split())


def _size(cfg) -> str:
    _, h, w = cfg["input_size"]
    return f"{h}×{w}" if h != w else f"{h}²"


def render() -> str:
    """The generated markdown block (without the markers)."""
    kanzoo = _kanzoo()
    from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg
    from timm.models._registry import _model_to_module

    from kanzoo.models import BASIS_TAGS
    from kanzoo.models._naming import parse_model_name

    names = kanzoo.list_models()
    weighted = kanzoo.list_pretrained()
    out: List[str] = [f"{len(names)} architectures in {len({_model_to_module[n] for n in names})} families; "
                      f"{len(weighted)} pretrained tags: " + (", ".join(f"`{w}`" for w in weighted) or "none") + ".",
                      "", "### Basis tags", "", "| tag | basis |", "|---|---|"]
    out += [f"| `{tag}` | {basis} |" for tag, basis in BASIS_TAGS.items()]

    families = {}
    for n in names:
        families.setdefault(_model_to_module[n], []).append(n)
    for module, members in sorted(families.items()):
        mod = sys.modules[f"kanzoo.models.{module}"]
        classes = set()
        rows = []
        for n in members:
            model = kanzoo.create_model(n, device="meta")
            classes.add(type(model).__name__)
            cfg = get_pretrained_cfg(n)
            parts = parse_model_name(n) or {}
            tags = [c.split(".", 1)[1] for c in get_arch_pretrained_cfgs(n) if "." in c]
            with_w = [t for t in tags if f"{n}.{t}" in weighted]
            params = sum(p.numel() for p in model.parameters()) / 1e6
            rows.append(f"| `{n}` | {parts.get('basis', '?')} | {getattr(model, 'task', 'classification')} | "
                        f"{params:.2f} | {_size(cfg.to_dict())} | {', '.join(with_w) or '-'} |")
        out += ["", f"### `{module}` ({len(members)} models; {', '.join(sorted(classes))})", "",
                _summary(mod.__doc__), "",
                "| model | basis | task | params (M) | input | weights |", "|---|---|---|---|---|---|", *rows]
    return "\n".join(out) + "\n"


def splice(text: str, block: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"docs/models.md lacks the markers {BEGIN!r} ... {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check; exit 1 if docs/models.md is stale")
    args = p.parse_args(argv)
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    new = splice(text, render())
    if args.check:
        if new != text:
            print("docs/models.md is out of date: run python docs/gen_models.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
