"""The segmentation side of the ``kanzoo`` command: ``convert --from ukan|mlpkan``, ``validate --task
segmentation``, ``predict`` on a segmentation model (mask overlays), and ``info`` on U-KAN and MLP-KAN.

Reference checkpoints are made here by the golden weight rule (tests/weight_rule.py) on the reference keys, so
the tests need no golden files: the U-KAN keys are kanzoo's with one knot row per input feature (``*.grid``,
(in, G+2K+1)), the MLP-KAN keys are the reference ``VisionKAN``'s (``blocks.N.kan.*``, FasterKAN's ``layernorm``,
``rbf.grid``, ``spline_linear.weight``, plus each block's dead ``mlp.fc1``/``mlp.fc2``)."""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import kanzoo
from kanzoo.cli import main
from kanzoo.compat import mlpkan as mlpkan_compat
from kanzoo.compat import ukan as ukan_compat
from kanzoo.workflows.masks import load_rgb, preprocess
from kanzoo.workflows.segmentation import DEFAULT_MASK_DIR
from tests.support.cli_run import run
from tests.support.weight_rule import rule_value

UKAN_DIMS = (16, 24, 32)
MLPKAN_KW = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, hdim_kan=32, num_classes=5)



def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kanzoo: error: ") and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------------- reference checkpoints
def ukan_reference(salt="cli/ukan", num_classes=1):
    """A reference-keyed U-KAN state dict (the rule's values) and its golden-style description."""
    case = {"family": "UKAN", "ctor_kwargs": {"embed_dims": list(UKAN_DIMS), "num_classes": num_classes}}
    own = ukan_compat.build(case).state_dict()
    ref = {}
    for key, value in own.items():
        if key.endswith("basis.grid"):  # the reference keeps one identical knot row per input feature
            prefix = key[: -len("basis.grid")]
            ref[prefix + "grid"] = value.expand(own[prefix + "base_weight"].shape[1], -1).clone()
        else:
            ref[key] = value
    state = {k: rule_value(salt, k, v.shape, v.dtype, v) for k, v in ref.items()}
    assert ukan_compat.is_reference_ukan_state(state) and "block1.0.layer.fc1.grid" in state
    return case, state


def mlpkan_reference(salt="cli/mlpkan"):
    """A reference-keyed MLP-KAN (VisionKAN) state dict, dead per-block FFNs included."""
    case = {"family": "VisionKAN", "ctor_kwargs": dict(MLPKAN_KW)}
    own = mlpkan_compat.build(case).state_dict()
    ref = {}
    for key, value in own.items():
        new = re.sub(r"^(blocks\.\d+)\.mlp\.", r"\1.kan.", key)
        if new.endswith("basis_weight"):  # (out, in, G) -> (out, in·G)
            new, value = new[: -len("basis_weight")] + "spline_linear.weight", value.reshape(value.shape[0], -1)
        elif new.endswith("basis.grid"):
            new = new[: -len("basis.grid")] + "rbf.grid"
        ref[new.replace(".basis_norm.", ".layernorm.")] = value
    dim = MLPKAN_KW["embed_dim"]
    for i in range(MLPKAN_KW["depth"]):  # the standard FFN the reference builds and never runs
        for name, shape in (("fc1.weight", (4 * dim, dim)), ("fc1.bias", (4 * dim,)), ("fc2.weight", (dim, 4 * dim)),
                            ("fc2.bias", (dim,))):
            ref[f"blocks.{i}.mlp.{name}"] = torch.zeros(shape)
    state = {k: rule_value(salt, k, v.shape, v.dtype, v) for k, v in ref.items()}
    assert mlpkan_compat.is_reference_mlpkan_state(state) and len(mlpkan_compat.split_dead_keys(state)[1]) == 8
    return case, state


def _load_by_file(out):
    """The converted weights through the architecture name (timm's ``file`` overlay) plus config.json's args and
    its top-level num_classes (timm's layout), given to the overlay so that the file's head is the model's."""
    config = json.loads((out / "config.json").read_text())
    return kanzoo.create_model(config["architecture"], pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(out / "model.safetensors"),
                                                           num_classes=config["num_classes"]),
                               **config.get("model_args", {})).eval()


@pytest.mark.parametrize("family", ["ukan", "mlpkan"])
def test_convert_from_reference_round_trip(family, tmp_path, capsys):
    case, state = ukan_reference() if family == "ukan" else mlpkan_reference()
    src, out = tmp_path / "model.pth", tmp_path / "out"
    torch.save(state, src)
    extra = ["--model-kwargs", "num_heads=3"] if family == "mlpkan" else []  # heads are not in the weights
    rc, stdout, err = run(capsys, "convert", "--from", family, src, out, *extra)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    arch = "ukan_small" if family == "ukan" else "mlp_kan_tiny_patch16_224"
    assert f"-> {arch}" in stdout and "every reference key used" in stdout
    assert f"create_model('local-dir:{out}', pretrained=True)" in stdout

    torch.manual_seed(0)
    size = 48 if family == "ukan" else MLPKAN_KW["img_size"]  # 48: U-KAN pads to 64 and crops back
    x = torch.randn(2, 3, size, size)
    expected = ukan_compat.from_reference(case, state) if family == "ukan" else \
        mlpkan_compat.from_reference(case, state)
    by_dir = kanzoo.create_model(f"local-dir:{out}", pretrained=True).eval()
    by_file = _load_by_file(out)
    # the command's own suggestion (its last line) builds the same model
    suggested = eval(stdout.strip().splitlines()[-1].split("or with ", 1)[1], {"kanzoo": kanzoo}).eval()
    with torch.no_grad():
        y = expected.eval()(x)
        assert y.shape == ((2, 1, size, size) if family == "ukan" else (2, MLPKAN_KW["num_classes"]))
        assert y.std() > 0
        for model in (by_dir, by_file, suggested):
            torch.testing.assert_close(model(x), y, rtol=1e-5, atol=1e-5)
    if family == "ukan":
        assert by_file.embed_dims == UKAN_DIMS and by_file.task == "segmentation"
    else:
        assert by_file.embed_dim == MLPKAN_KW["embed_dim"] and len(by_file.blocks) == MLPKAN_KW["depth"]
        assert "mlp.fc1/fc2" in stdout and "dropped" in stdout


def test_convert_wrong_family_is_one_error_line(tmp_path, capsys):
    _, ukan_state = ukan_reference()
    _, mlp_state = mlpkan_reference()
    torch.save(ukan_state, tmp_path / "ukan.pth")
    torch.save(mlp_state, tmp_path / "mlp.pth")
    rc, stdout, err = run(capsys, "convert", "--from", "mlpkan", tmp_path / "ukan.pth", tmp_path / "out1")
    line = one_error_line(err)
    assert rc == 1 and stdout == "" and not (tmp_path / "out1").exists()
    assert "not a MLP-KAN checkpoint" in line and "ukan.pth" in line and "--from ukan" in line
    rc, _, err = run(capsys, "convert", "--from", "ukan", tmp_path / "mlp.pth", tmp_path / "out2")
    line = one_error_line(err)
    assert rc == 1 and not (tmp_path / "out2").exists()
    assert "not a U-KAN checkpoint" in line and "--from mlpkan" in line
    # a file that is neither: no suggestion, still one line
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    rc, _, err = run(capsys, "convert", "--from", "ukan", tmp_path / "other.pth", tmp_path / "out3")
    line = one_error_line(err)
    assert rc == 1 and "not a U-KAN checkpoint" in line and "--from" not in line
    assert not (tmp_path / "out3").exists()


def test_convert_usage_errors(tmp_path, capsys):
    rc, _, err = run(capsys, "convert", "--from", "ukan", tmp_path / "missing.pth", tmp_path / "out")
    assert rc == 1 and "does not exist" in one_error_line(err) and not (tmp_path / "out").exists()
    _, state = ukan_reference()
    torch.save(state, tmp_path / "model.pth")
    rc, _, err = run(capsys, "convert", "--from", "ukan", tmp_path / "model.pth", tmp_path / "out", "--revision", "v1")
    assert rc == 1 and "drop --revision" in one_error_line(err)
    rc, _, err = run(capsys, "convert", "some/repo", tmp_path / "out", "--tag", "x")  # --from tck (the default)
    assert rc == 1 and "--tag applies to --from ukan|mlpkan|visionkan only" in one_error_line(err)
    (tmp_path / "afile").write_text("")
    rc, _, err = run(capsys, "convert", "--from", "ukan", tmp_path / "model.pth", tmp_path / "afile")
    assert rc == 1 and "is a file" in one_error_line(err)
    with pytest.raises(SystemExit) as e:
        main(["convert", "--from", "kat", "a", "b"])
    assert e.value.code == 2 and "invalid choice: 'kat'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ validate / predict
SIDE = 64  # the tiny model's cfg input size


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    """Four 40x48 RGB images with binary 0/255 masks (two by stem, two with BUSI's ``_mask`` suffix)."""
    root = tmp_path_factory.mktemp("segdata")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        mask[4 + i:24 + 2 * i, 6:30 + 3 * i] = 255
        Image.fromarray(img).save(root / "images" / f"case{i}.png")
        Image.fromarray(mask).save(root / "masks" / (f"case{i}.png" if i % 2 else f"case{i}_mask.png"))
    return root


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory, seg_data):
    """A tiny U-KAN (64x64 cfg) saved as a folder; its output bias is set to the negative median logit over the
    data, so about half of the pixels come out foreground."""
    torch.manual_seed(0)
    model = kanzoo.create_model("ukan_small", embed_dims=UKAN_DIMS,
                                pretrained_cfg_overlay=dict(input_size=(3, SIDE, SIDE))).eval()
    x = _inputs(model, sorted((seg_data / "images").iterdir()))
    with torch.no_grad():
        model.final.bias -= model(x).median()
    folder = tmp_path_factory.mktemp("run") / "tiny_ukan"
    kanzoo.save_pretrained(model, folder)
    return folder


def _inputs(model, paths):
    cfg = model.pretrained_cfg
    return torch.stack([preprocess(load_rgb(p), cfg["input_size"][1:], cfg["mean"], cfg["std"]) for p in paths])


def _expected_scores(run_dir, data, threshold=0.5):
    """IoU and Dice in percent, pooled and mean per image, computed here with numpy."""
    model = kanzoo.create_model(f"local-dir:{run_dir}", pretrained=True).eval()
    paths = sorted((data / "images").iterdir())
    with torch.no_grad():
        prob = torch.sigmoid(model(_inputs(model, paths))[:, 0]).numpy()
    inter = union = sizes = 0
    per_iou, per_dice = [], []
    for path, pr in zip(paths, prob):
        mfile = data / "masks" / path.name
        mfile = mfile if mfile.exists() else data / "masks" / f"{path.stem}_mask.png"
        t = torch.from_numpy(np.array(Image.open(mfile)) > 127).float()
        t = torch.nn.functional.interpolate(t[None, None], size=pr.shape, mode="nearest")[0, 0].numpy() > 0
        p = pr > threshold
        i, u, s = (p & t).sum(), (p | t).sum(), p.sum() + t.sum()
        inter, union, sizes = inter + i, union + u, sizes + s
        per_iou.append(i / u if u else 1.0)
        per_dice.append(2 * i / s if u else 1.0)
    return dict(iou=100 * inter / union, dice=100 * 2 * inter / sizes, iou_img=100 * np.mean(per_iou),
                dice_img=100 * np.mean(per_dice), fg=prob.mean())


def _scores(stdout):
    m = re.search(r"IoU ([\d.]+)%  Dice/F1 ([\d.]+)%  \(pooled over the dataset\); IoU ([\d.]+)%  Dice/F1 "
                  r"([\d.]+)%  \(mean per image\) on (\d+) images", stdout)
    assert m, stdout
    return dict(iou=float(m[1]), dice=float(m[2]), iou_img=float(m[3]), dice_img=float(m[4]), images=int(m[5]))


def test_validate_segmentation_scores(seg_data, seg_run, capsys):
    rc, stdout, err = run(capsys, "validate", "ukan_small", seg_data, "--checkpoint", seg_run, "-b", "3", "-j", "0",
                          "--no-progress")  # no --task: the model says segmentation
    assert rc == 0 and err == "", err
    got, want = _scores(stdout), _expected_scores(seg_run, seg_data)
    assert 0.2 < want["fg"] < 0.8 and 0 < want["iou"] < 100  # a prediction with both classes
    assert got["images"] == 4 and "(binary, threshold 0.5)" in stdout
    for k in ("iou", "dice", "iou_img", "dice_img"):
        assert got[k] == pytest.approx(want[k], abs=0.006), k
    assert got["iou"] != pytest.approx(got["iou_img"], abs=0.01)  # pooled and per image are different numbers

    # a higher threshold predicts less foreground: other scores, again as computed here
    rc, stdout, _ = run(capsys, "validate", "ukan_small", seg_data, "--checkpoint", seg_run, "--task",
                        "segmentation", "--threshold", "0.7", "-j", "0", "--no-progress")
    at_07, want = _scores(stdout), _expected_scores(seg_run, seg_data, threshold=0.7)
    assert rc == 0 and "threshold 0.7" in stdout
    assert at_07["iou"] == pytest.approx(want["iou"], abs=0.006) and at_07["iou"] != got["iou"]


def test_validate_progress_bar_goes_to_stderr(seg_data, seg_run, capsys):
    rc, stdout, err = run(capsys, "validate", "ukan_small", seg_data, "--checkpoint", seg_run, "-b", "2", "-j", "0",
                          "--progress")
    assert rc == 0 and "validate" in err and "batch" in err and "IoU" in stdout


def test_validate_segmentation_errors(tmp_path, seg_data, seg_run, capsys):
    base = ["--checkpoint", seg_run, "-j", "0", "--no-progress"]
    rc, _, err = run(capsys, "validate", "ukan_small", tmp_path / "nowhere", *base)
    assert rc == 1 and "data folder" in one_error_line(err) and "does not exist" in err
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    rc, _, err = run(capsys, "validate", "ukan_small", tmp_path / "empty", *base)
    assert rc == 1 and "no image in" in one_error_line(err) and "(images: 0)" in err
    # an image without a mask
    partial = tmp_path / "partial"
    (partial / "images").mkdir(parents=True)
    (partial / "masks").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(partial / "images" / name)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(partial / "masks" / "a.png")
    rc, _, err = run(capsys, "validate", "ukan_small", partial, *base)
    line = one_error_line(err)
    assert rc == 1 and "1 image(s) have no mask" in line and "b.png" in line
    # a mask of the wrong size, found in a DataLoader worker: still the one-line message
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(partial / "masks" / "b.png")
    rc, _, err = run(capsys, "validate", "ukan_small", partial, "--checkpoint", seg_run, "-j", "1", "--no-progress")
    line = one_error_line(err)
    assert rc == 1 and "must have the image's size" in line and "b.png" in line
    rc, _, err = run(capsys, "validate", "ukan_small", seg_data, *base, "--threshold", "1.5")
    assert rc == 1 and "--threshold must be in (0, 1)" in one_error_line(err)
    rc, _, err = run(capsys, "validate", "ukan_small", seg_data, *base, "--crop-pct", "0.9")
    assert rc == 1 and "drop --crop-pct" in one_error_line(err)


def test_task_must_fit_the_model(tmp_path, seg_data, seg_run, capsys):
    rc, _, err = run(capsys, "validate", "ukan_small", seg_data, "--checkpoint", seg_run, "--task", "classification")
    line = one_error_line(err)
    assert rc == 1 and "is a segmentation model" in line and "--task classification" in line
    rc, _, err = run(capsys, "validate", "simple_conv_kagn", seg_data, "--task", "segmentation", "--model-kwargs",
                     "width_scale=0.125")
    line = one_error_line(err)  # a classifier declares no task: it runs, and its (B, K) outputs are reported
    assert rc == 1 and "got shape [4, 10]" in line and "not a segmentation model" in line
    rc, _, err = run(capsys, "validate", "simple_conv_kagn", seg_data, "--threshold", "0.5")
    assert rc == 1 and "drop --threshold" in one_error_line(err)


def test_predict_writes_overlays(tmp_path, seg_data, seg_run, capsys, monkeypatch):
    images = sorted((seg_data / "images").iterdir())
    dupe = tmp_path / "other" / images[0].name  # same stem from another folder: its own overlay
    dupe.parent.mkdir()
    dupe.write_bytes(images[0].read_bytes())
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "predict", "ukan_small", *images[:2], dupe, "--checkpoint", seg_run, "--out", out,
                          "--save-masks")
    assert rc == 0, err
    lines = stdout.strip().splitlines()
    assert len(lines) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["case0_overlay.png", "case0_mask.png", "case1_overlay.png", "case1_mask.png", "case0-2_overlay.png",
         "case0-2_mask.png"])  # nothing else: no temporary files left
    model = kanzoo.create_model(f"local-dir:{seg_run}", pretrained=True).eval()
    for line, path, name in zip(lines, [*images[:2], dupe], ["case0", "case1", "case0-2"]):
        m = re.fullmatch(r"(\S+) -> (\S+) \(mask (\S+)\): foreground ([\d.]+)%", line)
        assert m and m[1] == str(path) and m[2] == str(out / f"{name}_overlay.png"), line
        with torch.no_grad():
            small = (model(_inputs(model, [path]))[0, 0] > 0).float()  # sigmoid > 0.5
        mask = torch.nn.functional.interpolate(small[None, None], size=(40, 48), mode="nearest")[0, 0].bool().numpy()
        assert 0 < mask.mean() < 1
        assert float(m[4]) == pytest.approx(100 * mask.mean(), abs=0.006)
        overlay = np.array(Image.open(m[2]))
        base = np.array(Image.open(path).convert("RGB"))
        assert overlay.shape == base.shape  # at the image's own size
        np.testing.assert_array_equal(overlay[~mask], base[~mask])
        np.testing.assert_allclose(overlay[mask], np.round(0.5 * base[mask] + 0.5 * np.array([230, 25, 75])), atol=1)
        np.testing.assert_array_equal(np.array(Image.open(m[3])) == 255, mask)

    # default folder, a missing file skipped with rc 1, a classifier refuses --out
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = run(capsys, "predict", "ukan_small", images[2], tmp_path / "gone.png", "--checkpoint", seg_run)
    assert rc == 1 and "gone.png" in err and "1 of 2 image(s) skipped" in err
    assert sorted(p.name for p in (tmp_path / DEFAULT_MASK_DIR).iterdir()) == ["case2_overlay.png"]
    assert f"{DEFAULT_MASK_DIR}/case2_overlay.png" in stdout
    rc, _, err = run(capsys, "predict", "simple_conv_kagn", images[2], "--out", out, "--model-kwargs",
                     "width_scale=0.125")
    assert rc == 1 and "drop --out" in one_error_line(err)


def test_help_names_the_default_mask_folder(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "-h"])
    assert f"./{DEFAULT_MASK_DIR}/" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")


# ------------------------------------------------------------------------------------------------ info
def _info_rows(out):
    return {m.group(1).strip(): m.group(2) for m in re.finditer(r"^(\s*[\w ]+?)\s{2,}(.*)$", out, re.M)}


def test_info_mlp_kan_total_and_active_parameters(capsys):
    rc, out, _ = run(capsys, "info", "mlp_kan_tiny_patch16_224", "--no-macs")
    rows = _info_rows(out)
    model = kanzoo.create_model("mlp_kan_tiny_patch16_224", device="meta")
    total, active = sum(p.numel() for p in model.parameters()), model.active_parameters()
    assert model.num_active_parameters() == active and 0 < active < total
    counts = model.parameter_counts()
    assert rc == 0
    assert rows["parameters"].startswith(f"{total:,} ") and "in total" in rows["parameters"]
    assert rows["active parameters"].startswith(f"{active:,} ({active / 1e6:.2f} M) per token")
    assert f"{counts['active_min']:,} to {counts['active_max']:,}" in rows["active parameters"]


def test_info_ukan_small_parameters_gmacs_gflops(capsys):
    rc, out, _ = run(capsys, "info", "ukan_small")
    rows = _info_rows(out)
    assert rc == 0 and rows["task"] == "segmentation" and "active parameters" not in rows
    assert rows["parameters"] == "6,356,689 (6.36 M)"  # the released U-KAN checkpoints' count
    gmacs = float(rows["GMACs"].split()[0])
    m = re.match(r"([\d.]+) at 3x256x256 = dense ([\d.]+) \(2 x GMACs\) \+ KAN basis evaluation ([\d.]+)",
                 rows["GFLOPs"])
    assert m and gmacs > 1
    gflops, dense, basis = map(float, m.groups())
    assert dense == pytest.approx(2 * gmacs, abs=0.002) and basis > 0
    assert gflops == pytest.approx(dense + basis, abs=0.002)
