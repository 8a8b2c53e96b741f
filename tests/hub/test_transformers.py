"""A saved kanzoo repo is a timm repo that Hugging Face transformers loads: ``AutoModelForImageClassification``,
``TimmWrapperModel`` and ``pipeline("image-classification")``, with kanzoo's own outputs."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config
from timm.models._hub import save_config_for_hf

import kanzoo

transformers = pytest.importorskip("transformers")

SMALL = dict(width_scale=0.25)


def saved(tmp_path, num_classes, label_names=None, **kwargs):
    torch.manual_seed(0)
    model = kanzoo.create_model("simple_conv_kagn", num_classes=num_classes, **dict(SMALL, **kwargs)).eval()
    folder = tmp_path / "repo"
    kanzoo.save_pretrained(model, folder, label_names=label_names)
    return model, folder


def image(seed=0, size=40):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_config_is_timms_with_model_args_trimmed(tmp_path):
    model, folder = saved(tmp_path, 3, in_chans=3)
    ours = json.loads((folder / "config.json").read_text())
    save_config_for_hf(model, str(tmp_path / "timm.json"))
    theirs = json.loads((tmp_path / "timm.json").read_text())
    # timm's writer repeats num_classes (and every default) inside model_args; kanzoo keeps what differs
    assert theirs["model_args"]["num_classes"] == 3 and ours["model_args"] == {"width_scale": 0.25}
    assert {k: v for k, v in ours.items() if k not in ("model_args", "library")} == \
        {k: v for k, v in theirs.items() if k != "model_args"}
    assert list(ours)[:4] == ["architecture", "num_classes", "num_features", "global_pool"]
    rebuilt = kanzoo.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt(x), model(x))


def test_auto_model_gives_kanzoos_logits_and_features(tmp_path):
    model, folder = saved(tmp_path, 3, label_names=["cat", "dog", "owl"])
    hf = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    assert hf.config.id2label == {0: "cat", 1: "dog", 2: "owl"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(hf(pixel_values=x).logits, model(x), rtol=0, atol=0)
        base = transformers.TimmWrapperModel.from_pretrained(folder).eval()(pixel_values=x)
        torch.testing.assert_close(base.last_hidden_state, model.forward_features(x), rtol=0, atol=0)
        torch.testing.assert_close(base.pooler_output, model.forward_head(model.forward_features(x), pre_logits=True),
                                   rtol=0, atol=0)


def _kanzoo_probabilities(model, img):
    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.no_grad():
        return model(transform(img).unsqueeze(0)).softmax(-1)[0]


def test_pipeline_runs_on_a_pil_image_with_the_saved_class_names(tmp_path):
    model, folder = saved(tmp_path, 3, label_names=["cat", "dog", "owl"])
    classify = transformers.pipeline("image-classification", model=str(folder))
    img = image()
    got = classify(img, top_k=3)
    probs = _kanzoo_probabilities(model, img)
    order = probs.argsort(descending=True).tolist()
    assert [r["label"] for r in got] == [["cat", "dog", "owl"][i] for i in order]
    np.testing.assert_allclose([r["score"] for r in got], probs[order].numpy(), rtol=1e-4, atol=1e-6)


def test_an_imagenet_1k_model_gets_readable_class_names(tmp_path):
    model, folder = saved(tmp_path, 1000)
    classify = transformers.pipeline("image-classification", model=str(folder))
    img = image(1)
    top = classify(img, top_k=1)[0]
    index = int(_kanzoo_probabilities(model, img).argmax())
    assert top["label"] == ImageNetInfo("imagenet-1k").index_to_description(index)
    assert not top["label"].startswith("LABEL_")
