"""kanzoo's workflows on tiny generated ImageFolders: train/finetune (resume, JSONL log, checkpoints, run folders
that push and load), predict, validate, plot, benchmark, and the clear errors for bad input."""
import json
import re

import pytest
import torch
from safetensors.torch import save_file

import kanzoo
from kanzoo.cli import main
from kanzoo.errors import WorkflowError
from kanzoo.workflows import train as train_mod
from kanzoo.workflows.data import ImageFolder, find_classes
from kanzoo.workflows.validate import class_mapping
from tests.support.cli_run import one_line_error, run
from tests.support.kan_layer_cases import single_thread
from tests.support.workflow_data import CLASSES, FAST, make_dataset, make_imagefolder, records, weights

NAME = "simple_conv_kagn"

# tiny tensors: intra-op threads only add synchronisation (and stall on busy shared cores)
_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)




def epochs_of(run_dir):
    return records(run_dir, "epoch")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("wf") / "data")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One finished 2-epoch run, shared by the tests that only read it."""
    run_dir = tmp_path_factory.mktemp("runs") / "base"
    assert main(["train", NAME, "--data", str(data), "-o", str(run_dir), "--epochs", "2", "-b", "8",
                 "--log-interval", "1", *FAST]) == 0
    return run_dir


# -- train ----------------------------------------------------------------------------------------------------
def test_train_writes_a_complete_run_folder(trained, data):
    names = {p.name for p in trained.iterdir()}
    assert {"args.json", "log.jsonl", "checkpoint.pth", "model.safetensors", "config.json", "README.md"} <= names
    assert not [n for n in names if n.startswith(".")], names  # no temp files left by the atomic writes
    config = json.loads((trained / "config.json").read_text())
    assert config["architecture"] == NAME and config["num_classes"] == 3
    assert config["label_names"] == list(CLASSES)
    assert config["pretrained_cfg"]["input_size"] == [3, 16, 16]
    assert config["model_args"]["width_scale"] == 0.25
    records = [json.loads(l) for l in (trained / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and len(steps) == epochs[-1]["step"] == 4  # 19 images, batch 8
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "epoch_time"):
        assert all(isinstance(r[key], float) for r in epochs), key
    # 2 full batches of 8 per epoch; the undecodable train/cat/broken.png is skipped and counted when drawn
    assert all(r["val_images"] == 6 and r["train_images"] + r["skipped"] == 16 for r in epochs)
    assert sum(r["skipped"] for r in epochs) >= 1
    # lr: warmup for one epoch, then cosine down
    lrs = [r["lr"] for r in steps]
    assert lrs[0] < lrs[1] < lrs[2] and lrs[2] == pytest.approx(1e-3) and lrs[3] < lrs[2]

    # the run folder loads as a timm/kanzoo model directory, with its class names
    model = kanzoo.create_model(f"local-dir:{trained}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == list(CLASSES)
    ckpt = torch.load(trained / "checkpoint.pth", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["arch"] == NAME and ckpt["label_names"] == list(CLASSES)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k]), k


def test_train_prints_progress_and_warns_once_per_broken_file(data, tmp_path, capsys):
    rc, out, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r", "--epochs", "2", "-b", "8",
                       "--model-kwargs", "width_scale=0.25", "--img-size", "16", "-j", "2", "--progress",
                       "--aa", "rand-m9-mstd0.5", "--reprob", "0.25",  # timm's RandAugment and random erasing
                       "--max-skipped-fraction", "0.1")
    assert rc == 0, err
    assert re.search(r"^epoch 1/2  train loss \d\.\d{4} top-1 .* val loss .* top-3 .*\(1 undecodable images skipped\)$",
                     out, re.M), out
    assert "run folder: " in out and "wrote " in out and "kanzoo push" in out
    assert err.count("skipped an image that will not decode") == 1 and "broken.png" in err  # workers=2
    assert "epoch 1/2" in err and "step/s" in err or "s/step" in err  # tqdm's bar on stderr


def test_resume_after_interrupt_is_bit_identical(data, tmp_path, capsys, monkeypatch):
    args = ["--data", str(data), "--epochs", "2", "-b", "8", "--log-interval", "1", "--seed", "3", *FAST]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", NAME, "-o", str(straight), *args]) == 0

    real = train_mod.train_one_epoch

    def interrupted(tr, epoch):
        if epoch == 1:
            real(tr, epoch)  # half the data order of epoch 2 is consumed, then Ctrl-C
            raise KeyboardInterrupt
        return real(tr, epoch)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted)
    capsys.readouterr()
    rc, _, err = run(capsys, "train", NAME, "-o", resumed, *args)
    assert rc == 130
    assert f"holds epoch 1/2; continue with: kanzoo train --resume {resumed}" in err
    assert not (resumed / "model.safetensors").exists()
    monkeypatch.setattr(train_mod, "train_one_epoch", real)

    after_epoch_1 = torch.load(resumed / "checkpoint.pth", weights_only=True)["state_dict"]
    rc, out, err = run(capsys, "train", "--resume", resumed, "-q")  # the saved settings are the defaults
    assert rc == 0, err
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], after_epoch_1[k]) for k in a)  # epoch 2 did change the weights
    drop = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rs]  # noqa: E731
    la = [json.loads(l) for l in (straight / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (resumed / "log.jsonl").read_text().splitlines()]
    assert drop(la) == drop(lb)  # the cut-short epoch's step lines were dropped, none duplicated


def test_resume_with_changed_settings_warns(trained, tmp_path, capsys):
    import shutil
    run_dir = tmp_path / "r"
    shutil.copytree(trained, run_dir)
    rc, out, err = run(capsys, "train", "--resume", run_dir, "--epochs", "3", "--lr", "0.002", "--no-quiet")
    assert rc == 0, err
    assert "resuming with changed settings" in err and "epochs 2 -> 3" in err and "lr 0.001 -> 0.002" in err
    assert f"resuming {run_dir} after epoch 2/3" in out
    assert [r["epoch"] for r in epochs_of(run_dir)] == [1, 2, 3]


def test_train_refuses_to_overwrite_a_run_and_bad_resume(trained, data, tmp_path, capsys):
    rc, _, err = run(capsys, "train", NAME, "--data", data, "-o", trained, *FAST)
    one_line_error(err, "already holds a run", f"--resume {trained}")
    rc, _, err = run(capsys, "train", "--resume", tmp_path / "nope")
    assert rc == 1
    one_line_error(err, "nothing to resume")
    rc, _, err = run(capsys, "train", "--data", data)
    one_line_error(err, "give the model NAME")
    rc, _, err = run(capsys, "train", "resnet_kagn18", "--resume", trained)
    one_line_error(err, f"is a run of {NAME}, not resnet_kagn18")


@pytest.mark.parametrize("argv, message", [
    (["train", NAME, "--data", "{data}", "-b", "0"], "--batch-size must be >= 1, got 0"),
    (["validate", NAME, "{data}/val", "-b", "0"], "--batch-size must be >= 1, got 0"),
    (["benchmark", NAME, "--batch", "0"], "--batch must be >= 1, got 0"),
    (["predict", NAME, "x.png", "--topk", "0"], "--topk must be >= 1, got 0"),
    (["train", NAME, "--data", "{data}", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["train", NAME, "--data", "{data}", "-j", "-1"], "--workers must be >= 0, got -1"),
])
def test_bad_numbers_are_usage_errors(data, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main([a.replace("{data}", str(data)) for a in argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_data_folder_errors(tmp_path, capsys):
    flat = tmp_path / "flat"
    make_imagefolder(flat, classes=("x",))
    for p in (flat / "x").iterdir():
        p.rename(flat / p.name)
    (flat / "x").rmdir()
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    afile = tmp_path / "file.png"
    afile.write_bytes(b"")
    cases = [
        (tmp_path / "missing", "does not exist"),
        (afile, "is a file, not a folder"),
        (flat, "has no class subfolders"),
        (flat, "holds 6 image(s) directly: move them into one subfolder per class"),
        (empty, "has 2 class folder(s) but no images"),
    ]
    for folder, message in cases:
        with pytest.raises(WorkflowError, match=re.escape(message)):
            find_classes(folder) if "image(s) directly" in message or "does not" in message else ImageFolder(folder)
        rc, _, err = run(capsys, "validate", NAME, folder, "-j", "0")
        assert rc == 1
        one_line_error(err, str(folder))
    rc, _, err = run(capsys, "train", NAME, "--data", empty, *FAST)
    one_line_error(err, "no images")
    one_class = tmp_path / "one"
    make_imagefolder(one_class, classes=("only",))
    rc, _, err = run(capsys, "train", NAME, "--data", one_class, *FAST)
    one_line_error(err, "needs at least 2")


def test_validation_classes_must_be_training_classes(data, tmp_path, capsys):
    import shutil
    d = tmp_path / "d"
    shutil.copytree(data, d)
    (d / "val" / "cat").rename(d / "val" / "cow")
    rc, _, err = run(capsys, "train", NAME, "--data", d, "-o", tmp_path / "r", *FAST)
    one_line_error(err, "class folders the model does not know", "cow")


# -- using a run: validate, predict, plot, push ---------------------------------------------------------------
def test_validate_matches_the_runs_last_epoch(trained, data, capsys):
    rc, out, err = run(capsys, "validate", NAME, data / "val", "--checkpoint", trained, "-j", "2", "-b", "4")
    assert rc == 0, err
    last = epochs_of(trained)[-1]
    m = re.match(r"^simple_conv_kagn on .*: top-1 ([\d.]+)%  top-3 ([\d.]+)%  loss ([\d.]+)  on 6 images in", out)
    assert m, out
    assert float(m.group(1)) == pytest.approx(last["val_top1"], abs=0.01)
    assert float(m.group(2)) == pytest.approx(last["val_top5"], abs=0.01)
    assert float(m.group(3)) == pytest.approx(last["val_loss"], abs=1e-4)
    # an undecodable image is skipped and counted
    rc, out, err = run(capsys, "validate", NAME, data / "train", "--checkpoint", trained, "-j", "0")
    assert rc == 0 and "on 18 images, 1 skipped (would not decode)" in out
    assert "broken.png" in err


def test_predict_prints_class_folder_names(trained, data, capsys):
    images = [data / "val" / c / "00.png" for c in CLASSES]
    rc, out, err = run(capsys, "predict", NAME, *images, "--checkpoint", trained, "--topk", "2")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == str(images[0]) and len(lines) == 9
    rows = [re.match(r"^  (\d)\. +([\d.]+)%  (\w+) \((\d)\)$", ln) for ln in lines if ln.startswith("  ")]
    assert all(rows) and {r.group(3) for r in rows} <= set(CLASSES)
    model = kanzoo.create_model(f"local-dir:{trained}", pretrained=True).eval()
    from kanzoo.workflows.data import build_transform, data_config_for, load_image
    tf = build_transform(data_config_for(model))
    with torch.no_grad():
        p = model(tf(load_image(images[0]))[None]).softmax(-1)[0]
    top = p.argmax().item()
    assert rows[0].group(3) == CLASSES[top] and float(rows[0].group(2)) == pytest.approx(100 * p[top].item(), abs=0.01)
    # a file that will not decode, and one that does not exist: warned, counted, exit 1
    rc, out, err = run(capsys, "predict", NAME, images[0], data / "train" / "cat" / "broken.png", "nope.png",
                       "--checkpoint", trained)
    assert rc == 1 and out.startswith(str(images[0]))
    assert "broken.png" in err and "nope.png" in err and "2 of 3 image(s) skipped" in err
    # a folder stands for the images in it
    rc, out, err = run(capsys, "predict", NAME, data / "val", "--checkpoint", trained, "--topk", "1")
    assert rc == 0 and out.count(str(data / "val")) == 6
    (data.parent / "no_images").mkdir(exist_ok=True)
    rc, _, err = run(capsys, "predict", NAME, data.parent / "no_images", "--checkpoint", trained)
    one_line_error(err, "no image files to classify")


def test_predict_imagenet_names_for_1k_models(data, capsys):
    from timm.data import ImageNetInfo
    info = ImageNetInfo()
    descriptions = {info.index_to_description(i) for i in range(1000)}
    rc, out, err = run(capsys, "predict", NAME, data / "val" / "cat" / "00.png", "--model-kwargs", "num_classes=1000",
                       "width_scale=0.25")
    assert rc == 0, err
    names = [re.match(r"^  \d\. +[\d.]+%  (.*) \((\d+)\)$", ln) for ln in out.splitlines()[1:]]
    assert len(names) == 5 and all(names)
    for m in names:
        assert m.group(1) == info.index_to_description(int(m.group(2))) and m.group(1) in descriptions


def test_validate_maps_imagenet_synset_folders_by_name(tmp_path):
    from timm.data import ImageNetInfo
    info = ImageNetInfo()
    model = kanzoo.create_model(NAME, num_classes=1000, width_scale=0.25, device="meta")
    folders = [info.index_to_label_name(i) for i in (7, 3, 999)]
    assert class_mapping(sorted(folders), model, None) == {info.index_to_label_name(i): i for i in (3, 7, 999)}
    with pytest.raises(WorkflowError, match="3 class folders but the model predicts 1000"):
        class_mapping(["a", "b", "c"], model, None)


def test_checkpoint_for_another_architecture(trained, tmp_path, capsys):
    # a run folder of another architecture
    rc, _, err = run(capsys, "validate", "resnet_kagn18", trained.parent / "x", "--checkpoint", trained)
    one_line_error(err, f"holds a {NAME}, not a resnet_kagn18", f"use NAME {NAME}")
    # a bare weight file of another architecture: the mismatch is listed, no torch traceback
    other = tmp_path / "vgg.safetensors"
    save_file(kanzoo.create_model("vgg_kagn11", width_scale=0.125, num_classes=3).state_dict(), str(other))
    rc, _, err = run(capsys, "predict", NAME, "x.png", "--checkpoint", other)
    assert rc == 1
    line = one_line_error(err, f"does not fit {NAME}", "missing", "have no place", "another architecture")
    assert "Traceback" not in err and len(line) < 1200
    # same architecture, other model arguments: shapes differ
    rc, _, err = run(capsys, "predict", NAME, "x.png", "--checkpoint", trained / "model.safetensors",
                     "--model-kwargs", "width_scale=0.5")
    one_line_error(err, "shapes differ", "--model-kwargs")
    # the file with the arguments it was saved with loads (num_classes is read from the classifier)
    rc, out, err = run(capsys, "predict", NAME, trained.parent / "x.png", "--checkpoint", trained / "model.safetensors",
                       "--model-kwargs", "width_scale=0.25")
    assert "does not fit" not in err
    rc, _, err = run(capsys, "predict", NAME, "x.png", "--checkpoint", tmp_path / "missing.pth")
    one_line_error(err, "does not exist")


def test_plot_writes_a_png(trained, tmp_path, capsys):
    rc, out, err = run(capsys, "plot", trained)
    assert rc == 0, err
    png = trained / "curves.png"
    assert out.strip() == f"wrote {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    from PIL import Image
    with Image.open(png) as im:
        assert im.size[0] > im.size[1] > 300
    rc, _, err = run(capsys, "plot", tmp_path)
    one_line_error(err, "no log.jsonl")
    rc, _, err = run(capsys, "plot", trained, "--out", tmp_path / "x.jpg")
    one_line_error(err, "must end in .png")


def test_run_folder_pushes_with_its_class_names(trained, hub_env, capsys):
    rc, out, err = run(capsys, "push", NAME, "me/run", "--checkpoint", trained)
    assert rc == 0, err
    files = hub_env.hub.files("me/run")
    assert json.loads(files["config.json"])["label_names"] == list(CLASSES)
    pushed = kanzoo.create_model("hf-hub:me/run", pretrained=True)
    local = weights(trained)
    assert all(torch.equal(v, local[k]) for k, v in pushed.state_dict().items())


def test_run_folder_exports_with_its_input_size_and_class_names(trained, tmp_path, capsys):
    from kanzoo.export import read_metadata
    rc, out, err = run(capsys, "export", NAME, "--checkpoint", trained, "--out", tmp_path / "x", "--format", "onnx")
    assert rc == 0, err
    meta = read_metadata(tmp_path / "x" / f"{NAME}.onnx")
    assert meta["labels"] == list(CLASSES) and meta["input_size"] == [3, 16, 16] and meta["num_classes"] == 3
    rc, _, err = run(capsys, "export", NAME, "--checkpoint", trained, "--out", tmp_path / "y",
                     "--model-arg", "width_scale=0.5")
    one_line_error(err, "is a run folder", "drop --model-arg")


# -- finetune with basis adapters -------------------------------------------------------------------------------
def test_finetune_with_adapters_from_a_run(trained, tmp_path, capsys):
    new = make_dataset(tmp_path / "new", broken=None, seed=5)
    for split in ("train", "val"):
        for c in CLASSES:
            (new / split / c).rename(new / split / f"new_{c}")
    ft = tmp_path / "ft"
    rc, out, err = run(capsys, "finetune", NAME, "--checkpoint", trained, "--data", new, "-o", ft,
                       "--peft", "extra_degrees=1", "rank=2", "--epochs", "1", "-b", "8", *FAST[2:])
    assert rc == 0, err
    names = {p.name for p in ft.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "model.safetensors", "config.json"} <= names
    config = json.loads((ft / "config.json").read_text())
    assert config["label_names"] == [f"new_{c}" for c in CLASSES]
    assert config["model_args"]["basis_kwargs"]["degree"] == 4  # merged: one more degree
    images = [new / "val" / f"new_{c}" / "00.png" for c in CLASSES]
    rc, merged_out, err = run(capsys, "predict", NAME, *images, "--checkpoint", ft)
    assert rc == 0, err
    # the adapter on its base (found in the run's args.json) predicts the same
    rc, adapter_out, err = run(capsys, "predict", NAME, *images, "--adapter", ft)
    assert rc == 0, err
    assert adapter_out == merged_out and "new_" in merged_out
    rc, adapter_out2, err = run(capsys, "predict", NAME, *images, "--checkpoint", trained, "--adapter", ft)
    assert adapter_out2 == merged_out
    # an adapter on the wrong base: a clear error
    rc, _, err = run(capsys, "predict", "resnet_kagn18", *images, "--adapter", ft, "--pretrained")
    assert rc == 1 and "Traceback" not in err


def test_peft_settings_errors(trained, data, tmp_path, capsys):
    rc, _, err = run(capsys, "finetune", NAME, "--checkpoint", trained, "--data", data, "-o", tmp_path / "a",
                     "--peft", "no_such_field=1", *FAST[2:])
    one_line_error(err, "--peft", "no_such_field")
    with pytest.raises(SystemExit):
        main(["finetune", NAME, "--peft", "notkv"])
    assert "KEY=VALUE" in capsys.readouterr().err


def test_finetune_without_weights_is_a_clear_error(data, tmp_path, capsys):
    rc, _, err = run(capsys, "finetune", NAME, "--data", data, "-o", tmp_path / "a", *FAST)
    one_line_error(err, "has no pretrained weights", "--checkpoint")


# -- benchmark --------------------------------------------------------------------------------------------------
def test_benchmark_prints_params_macs_latency_throughput(capsys):
    rc, out, err = run(capsys, "benchmark", NAME, "--batch", "2", "--size", "16", "--iters", "3", "--warmup", "1",
                       "--model-kwargs", "width_scale=0.25")
    assert rc == 0, err
    rows = dict(re.findall(r"^(\w+) +(.*)$", out, re.M))
    model = kanzoo.create_model(NAME, width_scale=0.25)
    from kanzoo.profile import count_macs
    assert rows["parameters"].startswith(f"{sum(p.numel() for p in model.parameters()):,} ")
    gmacs = count_macs(kanzoo.create_model(NAME, width_scale=0.25, device="meta"), (3, 16, 16))[0] / 1e9
    assert rows["GMACs"].startswith(f"{gmacs:.3f} per image at 3x16x16")
    ms = float(re.match(r"([\d.]+) ms per batch", rows["latency"]).group(1))
    ips = float(re.match(r"([\d,.]+) images/s", rows["throughput"]).group(1).replace(",", ""))
    assert ms > 0 and ips == pytest.approx(2 / (ms / 1e3), rel=0.02)
    assert "batch 2, float32 on cpu" in rows["setup"]
    rc, out, err = run(capsys, "benchmark", NAME, "--batch", "1", "--size", "16", "--iters", "2", "--train",
                       "--dtype", "bfloat16", "--no-macs", "--warmup", "0", "--model-kwargs", "width_scale=0.25")
    assert rc == 0 and "forward+backward" in out and "bfloat16" in out and "GMACs       n/a" in out
    rc, _, err = run(capsys, "benchmark", NAME, "--dtype", "float16")
    one_line_error(err, "float16 on CPU")
    rc, _, err = run(capsys, "benchmark", NAME, "--device", "cuda:99")
    assert rc == 1 and "kanzoo: error:" in err


# -- channels ------------------------------------------------------------------------------------------------
def test_one_channel_models_read_image_folders_as_grey(data, tmp_path, capsys):
    """A model built with in_chans=1 gets a 1-channel config (grey mean/std) and grey tensors that equal
    normalising PIL's own grey conversion; it trains, validates and predicts from RGB folders."""
    import numpy as np
    from PIL import Image

    from kanzoo.workflows.data import build_transform, data_config_for

    model = kanzoo.create_model(NAME, in_chans=1, width_scale=0.25)
    cfg = data_config_for(model, img_size=16)
    rgb_mean = kanzoo.create_model(NAME, width_scale=0.25).pretrained_cfg["mean"]
    assert cfg["input_size"] == (1, 16, 16) and cfg["mean"] == pytest.approx((sum(rgb_mean) / 3,))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    x = build_transform(cfg, training=False)(img)
    grey = torch.from_numpy(np.asarray(img.convert("L"), dtype=np.float32) / 255.0)
    expected = (grey - cfg["mean"][0]) / cfg["std"][0]
    assert x.shape == (1, 16, 16)
    torch.testing.assert_close(x[0], expected, rtol=0, atol=1.0 / 255 / cfg["std"][0])  # PIL rounds to uint8
    assert build_transform(cfg, training=True)(img).shape == (1, 16, 16)

    run_dir = tmp_path / "grey"
    rc, _, err = run(capsys, "train", NAME, "--data", data, "-o", run_dir, "--epochs", "1", "-b", "8", *FAST,
                     "--model-kwargs", "width_scale=0.25", "in_chans=1")
    assert rc == 0, err
    rc, out, err = run(capsys, "validate", NAME, data / "val", "--checkpoint", run_dir, "-j", "0")
    assert rc == 0 and "top-1" in out, err


def test_image_files_cannot_feed_other_channel_counts(data, capsys):
    rc, _, err = run(capsys, "validate", NAME, data / "val", "--model-kwargs", "in_chans=4", "width_scale=0.25",
                     "-j", "0")
    assert rc != 0
    one_line_error(err, "the model takes 4 input channels", "RGB (3) or grayscale (1)")
