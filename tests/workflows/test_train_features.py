"""``kanzoo train``'s recipe support (``--recipe TAG``) and the training features the published recipes need:
mixup / cutmix with soft targets, model EMA validated beside the model, gradient accumulation, layer-wise lr
decay, channels-last, torch.compile, timm's streaming datasets, and exact resume with all of them on."""
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from kanzoo.cli import main
from kanzoo.recipes import load_recipe
from kanzoo.workflows import train as train_mod
from kanzoo.workflows.train_config import TrainConfig
from kanzoo.workflows.train_recipe import settings_from_recipe
from tests.support.cli_run import one_line_error, run
from tests.support.kan_layer_cases import single_thread
from tests.support.workflow_data import CLASSES, FAST, make_dataset, make_imagefolder, records, weights

NAME = "simple_conv_kagn"
KAT = "kat_tiny_patch16_224"
TAG = "kat_tiny_patch16_224.in1k"

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)

#: every feature at once (tiny EMA decay so that the EMA moves visibly in a few updates)
FEATURES = ["--mixup", "0.8", "--cutmix", "1.0", "--model-ema", "--model-ema-decay", "0.8", "--grad-accum-steps", "2",
            "--layer-decay", "0.7", "--channels-last", "--clip-grad", "1.0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("feat") / "data")


def interrupted_in_epoch_2(real):
    """``train_one_epoch`` that runs epoch 2 through, then raises Ctrl-C (its checkpoint is never written)."""
    def run_epoch(tr, epoch):
        out = real(tr, epoch)
        if epoch == 1:
            raise KeyboardInterrupt
        return out
    return run_epoch


class SpyMixup(train_mod.Mixup):
    """timm's Mixup, recording for every batch whether it mixed and whether by cutmix."""

    calls = []

    def _params_per_batch(self):
        lam, use_cutmix = super()._params_per_batch()
        SpyMixup.calls.append((float(lam), bool(use_cutmix)))
        return lam, use_cutmix


# -- recipes ------------------------------------------------------------------------------------------------------
def test_a_recipe_run_applies_the_recipe_and_records_it(data, tmp_path, capsys, monkeypatch):
    recipe = load_recipe(TAG)
    SpyMixup.calls = []
    monkeypatch.setattr(train_mod, "Mixup", SpyMixup)
    ema_updates = []
    real_update = train_mod.ModelEmaV3.update
    monkeypatch.setattr(train_mod.ModelEmaV3, "update",
                        lambda self, model, step=None: (ema_updates.append(step), real_update(self, model, step))[1])
    built = []
    real_load = train_mod.load_model
    monkeypatch.setattr(train_mod, "load_model", lambda *a, **kw: (built.append(kw["model_kwargs"]),
                                                                    real_load(*a, **kw))[1])
    run_dir = tmp_path / "kat"
    rc, out, err = run(capsys, "train", KAT, "--recipe", TAG, "--data", data, "--epochs", "1", "-b", "4", "-o",
                       run_dir, "-j", "0", "--no-progress", "--max-skipped-fraction", "0.2", "--seed", "1")
    assert rc == 0, err
    args = json.loads((run_dir / "args.json").read_text())
    given = {"batch_size": 4, "epochs": 1}
    for key, value in recipe.settings.items():
        if key in ("lr", "model"):
            continue
        expected = given.get(key, value)
        assert args[key] == expected, (key, args[key], expected)
    assert args["recipe"] == TAG
    assert "input 3x224x224" in out  # the recipe's input size is what ran
    # one process with batch 4 against the authors' global batch: the lr scales linearly
    ours = 4 * 1
    assert recipe.global_batch_size != ours
    assert args["lr"] == pytest.approx(recipe.settings["lr"] * ours / recipe.global_batch_size)
    assert sum("linear scaling" in line for line in out.splitlines()) == 1
    # the recipe's keys kanzoo does not apply are listed in one line and kept
    extras = recipe.extras
    assert args["recipe_unapplied"] == extras
    line = [ln for ln in out.splitlines() if ln.startswith("recipe settings kanzoo train does not apply: ")]
    assert len(line) == 1 and all(k in line[0] for k in extras)
    # drop_path went to the model; mixup, cutmix and the EMA ran; the EMA was validated
    assert built[0]["drop_path_rate"] == recipe.settings["drop_path"]
    steps = records(run_dir, "epoch")[-1]["step"]
    assert len(SpyMixup.calls) == steps and ema_updates == list(range(1, steps + 1))
    assert {c for _, c in SpyMixup.calls} == {True, False}, SpyMixup.calls  # both cutmix and mixup batches
    rec = records(run_dir, "epoch")[-1]
    assert rec["ema_val_images"] == rec["val_images"] == 6 and isinstance(rec["ema_val_top1"], float)
    assert (run_dir / "model_ema.safetensors").is_file()


def test_options_given_win_over_the_recipe_and_an_explicit_lr_is_not_scaled(tmp_path, capsys):
    recipe = load_recipe(TAG)
    # stops at the data check, after the recipe was resolved and its lines printed
    rc, out, err = run(capsys, "train", "--recipe", TAG, "--data", tmp_path / "none", "--lr", "0.01", "-b", "4")
    one_line_error(err, "does not exist")
    assert "linear scaling" not in out and f"recipe {TAG}" in out
    fields = {f.name: f.default for f in TrainConfig.__dataclass_fields__.values() if f.name != "model_kwargs"}
    values = dict(fields, model=None, model_kwargs={}, batch_size=recipe.settings["batch_size"], lr=0.5)
    r = settings_from_recipe(recipe, values, given={"mixup", "lr"}, world_size=recipe.world_size)
    assert r.values["model"] == recipe.model and r.values["lr"] == 0.5
    assert r.values["mixup"] == fields["mixup"] and r.values["cutmix"] == recipe.settings["cutmix"]
    assert not any("linear scaling" in n for n in r.notes)
    r = settings_from_recipe(recipe, values, given=set(), world_size=recipe.world_size)  # the authors' batch
    assert r.values["lr"] == recipe.settings["lr"] and not any("linear scaling" in n for n in r.notes)
    r = settings_from_recipe(recipe, values, given=set(), world_size=2 * recipe.world_size)
    assert r.values["lr"] == pytest.approx(2 * recipe.settings["lr"])


def test_recipe_errors_are_one_line(data, capsys):
    rc, _, err = run(capsys, "train", "--recipe", "kat_tiny_patch16_224.nope", "--data", data)
    one_line_error(err, "kat_tiny_patch16_224.nope")
    rc, _, err = run(capsys, "train", NAME, "--recipe", TAG, "--data", data)
    one_line_error(err, f"recipe {TAG} trains {KAT}, not {NAME}")


def test_segmentation_recipes_and_models_are_refused_before_a_run_starts(data, tmp_path, capsys):
    """U-KAN's recipes are segmentation recipes (data for its own trainer); kanzoo train trains classifiers."""
    assert load_recipe("ukan_small.ukan_busi").task == "segmentation" and load_recipe(TAG).task == "classification"
    rc, _, err = run(capsys, "train", "--recipe", "ukan_small.ukan_busi", "--data", data, "-o", tmp_path / "a")
    assert rc == 1
    one_line_error(err, "recipe ukan_small.ukan_busi trains segmentation and kanzoo train trains image classifiers")
    rc, _, err = run(capsys, "train", "ukan_small", "--data", data, "-o", tmp_path / "b", "-j", "0", "-q")
    assert rc == 1
    one_line_error(err, "ukan_small is a segmentation model and kanzoo train trains image classifiers")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv, message", [
    (["--model-ema-decay", "1.5"], "--model-ema-decay must be in (0, 1), got 1.5"),
    (["--grad-accum-steps", "0"], "--grad-accum-steps must be >= 1, got 0"),
    (["--layer-decay", "2"], "--layer-decay must be in (0, 1], got 2.0"),
    (["--cutmix-minmax", "0.8", "0.2"], "--cutmix-minmax must be two fractions"),
    (["--mixup-prob", "1.5"], "--mixup-prob must be in [0, 1], got 1.5"),
    (["--opt", "nosuchopt"], "--opt 'nosuchopt'"),
    (["--num-classes", "3"], "--num-classes 3 applies to streaming datasets"),
    (["--cooldown-epochs", "-1"], "--cooldown-epochs must be an integer >= 0"),
])
def test_bad_feature_settings_are_one_line_errors(data, tmp_path, capsys, argv, message):
    rc, _, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r", *FAST, *argv)
    assert rc == 1
    one_line_error(err, message)
    assert not (tmp_path / "r" / "checkpoint.pth").exists()


# -- the features, and exact resume with all of them ---------------------------------------------------------------
def test_resume_is_exact_with_every_feature_on(data, tmp_path, capsys, monkeypatch):
    # one epoch and one cooldown epoch: the interruption falls in the cooldown
    args = ["--data", str(data), "--epochs", "1", "--cooldown-epochs", "1", "-b", "4", "--log-interval", "1",
            "--seed", "5", *FAST, *FEATURES]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    rc, out, err = run(capsys, "train", NAME, "-o", straight, *args, "--no-quiet")
    assert rc == 0, err
    assert "mixup 0.8 / cutmix 1.0" in out and "model EMA (decay 0.8)" in out and "2 batches per update" in out

    real = train_mod.train_one_epoch
    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted_in_epoch_2(real))
    rc, _, err = run(capsys, "train", NAME, "-o", resumed, *args)
    assert rc == 130
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    rc, _, err = run(capsys, "train", "--resume", resumed, "-q")
    assert rc == 0, err
    assert "resuming with changed settings" not in err

    for name in ("model.safetensors", "model_ema.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    model, ema = weights(straight), load_file(str(straight / "model_ema.safetensors"))
    assert not all(torch.equal(model[k], ema[k]) for k in model)  # the EMA is its own set of weights
    drop = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rs]  # noqa: E731
    assert drop(records(straight)) == drop(records(resumed))

    # accumulation: 19 images (one undecodable) in batches of 4 -> 4 batches per epoch, 2 updates of 2 batches
    epochs = records(straight, "epoch")
    assert [r["step"] for r in epochs] == [2, 4]
    # the cooldown epoch runs at the schedule's final lr
    assert epochs[0]["lr"] > 1e-6 and epochs[1]["lr"] == pytest.approx(1e-6)
    assert json.loads((straight / "args.json").read_text())["cooldown_epochs"] == 1
    assert "epoch 2/2" in out
    # layer decay: the optimizer's groups carry timm's lr scales, the earliest group the smallest
    ckpt = torch.load(straight / "checkpoint.pth", weights_only=False)
    scales = sorted({g["lr_scale"] for g in ckpt["optimizer"]["param_groups"]})
    assert len(scales) > 2 and scales[-1] == 1.0 and scales[0] < 0.7 ** 2
    assert ckpt["model_ema"].keys() == ckpt["state_dict"].keys()


def test_the_float16_gradient_scaler_is_checkpointed_and_resumed(data, tmp_path, capsys, monkeypatch):
    """float16 AMP runs on CUDA only; its GradScaler path (scale, unscale for clipping, step, update, checkpoint,
    restore) is the same on CPU, with a scaler whose scale changes during the run (growth every 2 steps)."""
    monkeypatch.setattr(train_mod, "grad_scaler",
                        lambda device, amp, dtype: torch.amp.GradScaler("cpu", init_scale=2.0 ** 4, growth_interval=2))
    args = ["--data", str(data), "--epochs", "2", "-b", "4", "--seed", "4", *FAST, "--grad-accum-steps", "2",
            "--clip-grad", "0.5", "--model-ema"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", NAME, "-o", str(straight), *args]) == 0
    real = train_mod.train_one_epoch
    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted_in_epoch_2(real))
    assert main(["train", NAME, "-o", str(resumed), *args]) == 130
    first = torch.load(resumed / "checkpoint.pth", weights_only=False)["scaler"]
    assert first["scale"] == 2.0 ** 5  # 2 updates: grown once
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    assert main(["train", "--resume", str(resumed)]) == 0
    ends = [torch.load(d / "checkpoint.pth", weights_only=False)["scaler"] for d in (straight, resumed)]
    assert ends[0]["scale"] == 2.0 ** 6 and ends[0] == ends[1]  # the resumed scaler went on from its state
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_accumulated_batches_equal_one_big_batch(data, tmp_path):
    """K batches of B accumulated give the update of one batch of K*B (no augmentation, no BatchNorm)."""
    common = ["--data", str(data), "--epochs", "1", "--no-aug", "--seed", "2", "--lr", "0.01", "--warmup-epochs",
              "0", "--model-kwargs", "width_scale=0.25", "norm_layer=instance", "--img-size", "16", "-j", "0",
              "-q", "--no-progress", "--max-skipped-fraction", "0.1", "--val-data", str(data / "val")]
    big, acc, small = tmp_path / "big", tmp_path / "acc", tmp_path / "small"
    assert main(["train", NAME, *common, "-b", "8", "-o", str(big)]) == 0
    assert main(["train", NAME, *common, "-b", "4", "--grad-accum-steps", "2", "-o", str(acc)]) == 0
    assert main(["train", NAME, *common, "-b", "4", "-o", str(small)]) == 0
    wb, wa, ws = weights(big), weights(acc), weights(small)
    dist = lambda x, y: sum(((x[k] - y[k]).double() ** 2).sum() for k in x).sqrt().item()  # noqa: E731
    assert dist(wb, wa) < dist(wb, ws) / 20, (dist(wb, wa), dist(wb, ws))
    assert records(big, "epoch")[0]["step"] == records(acc, "epoch")[0]["step"] == 2


def test_compile_runs_the_model_through_kanzoo_compile_model(data, tmp_path, capsys, monkeypatch):
    seen, transforms = [], []
    real = train_mod.compile_model
    monkeypatch.setattr(train_mod, "compile_model", lambda m, c: (seen.append(c), real(m, c))[1])
    real_transform = train_mod.build_transform
    monkeypatch.setattr(train_mod, "build_transform", lambda config, training, *a: (
        transforms.append((training, config["interpolation"])), real_transform(config, training, *a))[1])
    rc, out, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "c", "--epochs", "1", "-b", "8",
                       *FAST, "--compile", "eager", "--no-quiet", "--interpolation", "bilinear",
                       "--train-interpolation", "nearest")
    assert rc == 0, err
    assert seen == [{"backend": "eager"}] and "torch.compile (eager)" in out
    assert sorted(transforms) == [(False, "bilinear"), (True, "nearest")]
    assert json.loads((tmp_path / "c" / "args.json").read_text())["torchcompile"] == "eager"
    assert all(not k.startswith("_orig_mod") for k in weights(tmp_path / "c"))


def test_runs_saved_with_the_old_setting_names_resume(data, tmp_path, capsys):
    run_dir = tmp_path / "old"
    assert main(["train", NAME, "--data", str(data), "-o", str(run_dir), "--epochs", "1", "-b", "8", *FAST,
                 "--smoothing", "0.2", "--reprob", "0.3", "--aa", "rand-m9-mstd0.5"]) == 0
    args = json.loads((run_dir / "args.json").read_text())
    old = {"smoothing": "label_smoothing", "reprob": "re_prob", "aa": "auto_augment"}
    args = {old.get(k, k): v for k, v in args.items()}  # as kanzoo wrote args.json before the renames
    (run_dir / "args.json").write_text(json.dumps(args))
    ckpt = torch.load(run_dir / "checkpoint.pth", weights_only=False)
    ckpt["config"] = args
    torch.save(ckpt, run_dir / "checkpoint.pth")
    rc, out, err = run(capsys, "train", "--resume", run_dir, "--epochs", "2")
    assert rc == 0, err
    assert "resuming with changed settings (epochs 1 -> 2)" in err  # nothing else changed
    now = json.loads((run_dir / "args.json").read_text())
    assert (now["smoothing"], now["reprob"], now["aa"]) == (0.2, 0.3, "rand-m9-mstd0.5")
    rc, _, err = run(capsys, "train", "--resume", run_dir, "--recipe", TAG)
    one_line_error(err, "--recipe sets up a new run")


# -- timm's streaming datasets ------------------------------------------------------------------------------------
def _write_wds(root, split, per_shard, shards, seed):
    """webdataset shards (``.png`` + ``.cls``) and the split's entry for timm's ``_info.json``."""
    rng = np.random.default_rng(seed)
    names = []
    for s in range(shards):
        name = f"tiny-{split}-{s:04d}.tar"
        with tarfile.open(root / name, "w") as tar:
            for i in range(per_shard):
                cls = (s * per_shard + i) % 3
                img = np.clip(rng.normal(30 + 90 * cls, 25, (20, 20, 3)), 0, 255).astype("uint8")
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG")
                for ext, payload in (("png", buf.getvalue()), ("cls", str(cls).encode())):
                    info = tarfile.TarInfo(f"{split}{s:02d}{i:03d}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        names.append(name)
    return {"name": split, "num_samples": per_shard * shards, "filenames": names,
            "shard_lengths": [per_shard] * shards}


def test_streaming_webdataset_shards(tmp_path, capsys, monkeypatch):
    pytest.importorskip("webdataset")
    root = tmp_path / "wds"
    root.mkdir()
    info = {"name": "tiny", "splits": {"train": _write_wds(root, "train", 8, 2, 0),
                                       "validation": _write_wds(root, "validation", 6, 1, 1)}}
    (root / "_info.json").write_text(json.dumps(info))
    base = ["train", NAME, "--data", "wds/tiny", "--data-dir", root, "--epochs", "2", "-b", "4",
            "--model-kwargs", "width_scale=0.25", "--img-size", "16", "-j", "0", "--no-progress", "-q"]
    rc, _, err = run(capsys, *base, "-o", tmp_path / "none")
    one_line_error(err, "--num-classes")  # .cls targets carry no class names
    straight, resumed = tmp_path / "s", tmp_path / "r"
    rc, out, err = run(capsys, *base, "--num-classes", "3", "-o", straight, "--model-ema")
    assert rc == 0, err
    epochs = records(straight, "epoch")
    assert [r["train_images"] for r in epochs] == [16, 16] and [r["val_images"] for r in epochs] == [6, 6]
    assert [r["step"] for r in epochs] == [4, 8] and "ema_val_top1" in epochs[-1]
    assert json.loads((straight / "config.json").read_text())["label_names"] == ["0", "1", "2"]
    # interrupted in epoch 2, resumed: the same weights and EMA
    real = train_mod.train_one_epoch
    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted_in_epoch_2(real))
    rc, _, err = run(capsys, *base, "--num-classes", "3", "-o", resumed, "--model-ema")
    assert rc == 130
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    rc, _, err = run(capsys, "train", "--resume", resumed)
    assert rc == 0, err
    for name in ("model.safetensors", "model_ema.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_map_style_timm_datasets_by_name(tmp_path, capsys):
    """``--data torch/folder``: timm's create_dataset over torchvision's ImageFolder (the map-style path that
    ``hfds/`` takes too): class names from the dataset, sampler and validation shards as for a folder."""
    root = tmp_path / "tv"
    make_imagefolder(root / "train", per_class=4)
    make_imagefolder(root / "val", per_class=2, seed=1)
    run_dir = tmp_path / "r"
    rc, out, err = run(capsys, "train", NAME, "--data", "torch/folder", "--data-dir", root, "-o", run_dir,
                       "--epochs", "1", "-b", "4", "--model-kwargs", "width_scale=0.25", "--img-size", "16", "-j", "0",
                       "-q", "--no-progress")
    assert rc == 0, err
    rec = records(run_dir, "epoch")[0]
    assert rec["train_images"] == 12 and rec["val_images"] == 6
    assert json.loads((run_dir / "config.json").read_text())["label_names"] == list(CLASSES)
    rc, _, err = run(capsys, "train", NAME, "--data", "wds/none", "--data-dir", tmp_path / "missing", "-o",
                     tmp_path / "x", *FAST)
    one_line_error(err, "'wds/none'", "could not be opened")


@pytest.mark.parametrize("prefix", ["hfds", "hfids"])
def test_hugging_face_datasets_by_name(tmp_path, capsys, prefix):
    """``--data hfds/PATH`` (map-style) and ``hfids/PATH`` (streaming): timm's readers over ``datasets``, here a
    local imagefolder (train/ and val/, which ``datasets`` calls the validation split), with no network."""
    pytest.importorskip("datasets")
    root = tmp_path / "hf"
    make_imagefolder(root / "train", per_class=4)
    make_imagefolder(root / "val", per_class=2, seed=1)
    run_dir = tmp_path / "r"
    argv = ["train", NAME, "--data", f"{prefix}/{root}", "--data-dir", tmp_path / "cache", "--epochs", "2", "-b",
            "4", "--model-kwargs", "width_scale=0.25", "--img-size", "16", "-j", "0", "-q", "--no-progress"]
    names = list(CLASSES)  # map-style: the dataset's ClassLabel names become the model's labels
    if prefix == "hfids":  # a stream not read before knows neither its size nor its class names
        rc, _, err = run(capsys, *argv, "-o", tmp_path / "none")
        one_line_error(err, "Dataset length is unknown", "give its images per epoch with --train-num-samples N")
        argv += ["--train-num-samples", "12", "--val-num-samples", "6", "--num-classes", "3"]
        names = ["0", "1", "2"]
    rc, out, err = run(capsys, *argv, "-o", run_dir)
    assert rc == 0, err
    recs = records(run_dir, "epoch")
    assert [(r["train_images"], r["val_images"]) for r in recs] == [(12, 6), (12, 6)]
    assert [r["step"] for r in recs] == [3, 6]
    assert json.loads((run_dir / "config.json").read_text())["label_names"] == names


@pytest.mark.parametrize("per_epoch", [False, True])
def test_timm_schedules_other_than_cosine(data, tmp_path, per_epoch):
    """--sched poly (the tck VGG recipes'): lr = min + (base - min) (1 - t/T)^power, with t and T counted in
    updates (default) or in epochs (--no-sched-on-updates)."""
    base, low, power = 0.01, 1e-4, 0.5
    run_dir = tmp_path / "poly"
    assert main(["train", NAME, "--data", str(data), "-o", str(run_dir), "--epochs", "2", "-b", "8", *FAST,
                 "--sched", "poly", "--decay-rate", str(power), "--lr", str(base), "--min-lr", str(low),
                 "--warmup-epochs", "0", "--log-interval", "1", *(["--no-sched-on-updates"] if per_epoch else [])]) == 0
    steps = records(run_dir, "step")
    assert len(steps) == 4  # 2 updates an epoch
    t, total = ([0, 0, 1, 1], 2) if per_epoch else ([0, 1, 2, 3], 4)
    expected = [low + (base - low) * (1 - k / total) ** power for k in t]
    assert [r["lr"] for r in steps] == pytest.approx(expected)
