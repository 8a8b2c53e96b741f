"""kanzoo.metrics (IoU, Dice/F1, pooled and per image) and kanzoo.workflows.masks (folder dataset, predicted masks,
PNG overlays). Expected values are counted by hand or by an independent numpy computation."""
import numpy as np
import pytest
import torch
from PIL import Image

from kanzoo.errors import WorkflowError
from kanzoo.metrics import SegmentationMetrics, evaluate_segmentation, iou_dice_counts, masks_from_logits
from kanzoo.workflows.masks import SegmentationFolder, overlay_mask, predict_masks, write_mask_overlay


def _logits(mask):
    """Binary logits (B, 1, H, W) that threshold to ``mask``."""
    m = torch.as_tensor(mask, dtype=torch.float32)
    return (m * 2 - 1)[:, None] * 5


def test_binary_pooled_vs_per_image():
    # image 0: a 4-pixel target, prediction hits 2 of them and adds 2 -> IoU 2/6, Dice 4/8
    # image 1: a 1-pixel target, prediction misses it -> IoU 0, Dice 0
    # image 2: empty target, empty prediction -> per image 1 (perfect), nothing pooled
    t = torch.zeros(3, 4, 4, dtype=torch.long)
    p = torch.zeros(3, 4, 4, dtype=torch.long)
    t[0, 0, :4] = 1
    p[0, 0, :2] = 1
    p[0, 1, :2] = 1
    t[1, 3, 3] = 1
    m = SegmentationMetrics(num_classes=1)
    m.update(_logits(p), t)
    r = m.compute()
    inter, union, sizes = 2, 6 + 1, 8 + 1
    assert r.iou == pytest.approx(100 * inter / union)
    assert r.dice == pytest.approx(100 * 2 * inter / sizes)
    assert r.dice == pytest.approx(100 * 2 * (inter / union) / (1 + inter / union))  # pooled: Dice = 2IoU/(1+IoU)
    assert r.iou_per_image == pytest.approx(100 * (2 / 6 + 0 + 1) / 3)
    assert r.dice_per_image == pytest.approx(100 * (4 / 8 + 0 + 1) / 3)
    assert r.images == 3


def test_batches_accumulate_like_one_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 1, 8, 8, generator=g)
    target = (torch.rand(6, 8, 8, generator=g) > 0.6).long()
    one, split = SegmentationMetrics(), SegmentationMetrics()
    one.update(logits, target)
    for i in range(0, 6, 4):
        split.update(logits[i:i + 4], target[i:i + 4, None])  # (B, 1, H, W) targets are accepted too
    assert one.compute().as_dict() == pytest.approx(split.compute().as_dict(), rel=1e-12)
    # independent numpy computation
    p = (1 / (1 + np.exp(-logits[:, 0].numpy())) > 0.5)
    t = target.numpy().astype(bool)
    pooled = (p & t).sum() / (p | t).sum()
    per = [((pi & ti).sum() / (pi | ti).sum()) if (pi | ti).any() else 1.0 for pi, ti in zip(p, t)]
    assert one.compute().iou == pytest.approx(100 * pooled)
    assert one.compute().iou_per_image == pytest.approx(100 * np.mean(per))


def test_multiclass_mean_over_present_classes_and_ignore_index():
    t = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 255]]])
    logits = torch.zeros(1, 3, 2, 4)
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 0]]])
    logits.scatter_(1, pred[:, None], 1.0)
    m = SegmentationMetrics(num_classes=3, ignore_index=255)
    m.update(logits, t)
    r = m.compute()
    # class 0: P={0,5} T={0,1} -> 1/3; class 1: P={1,2,3} T={2,3} -> 2/3; class 2: P={4} T={4,5} -> 1/2
    ious = [1 / 3, 2 / 3, 1 / 2]
    dices = [2 * 1 / 4, 2 * 2 / 5, 2 * 1 / 3]
    assert r.iou == pytest.approx(100 * np.mean(ious)) and r.iou_per_image == pytest.approx(100 * np.mean(ious))
    assert r.dice == pytest.approx(100 * np.mean(dices))
    counts = iou_dice_counts(pred, t, 3, ignore_index=255)
    assert counts.shape == (1, 3, 3) and counts[0, 1].tolist() == [2, 3, 5]


def test_threshold_and_errors():
    logits = torch.tensor([[[[0.3, -0.3]]]])
    assert masks_from_logits(logits).tolist() == [[[1, 0]]]
    assert masks_from_logits(logits, threshold=0.6).tolist() == [[[0, 0]]]
    m = SegmentationMetrics(num_classes=2)
    with pytest.raises(ValueError, match=r"expected logits \(B, 2, H, W\)"):
        m.update(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="does not match logits"):
        m.update(torch.zeros(1, 2, 4, 4), torch.zeros(1, 5, 4))
    with pytest.raises(ValueError, match="no images were added"):
        SegmentationMetrics().compute()
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        SegmentationMetrics(num_classes=0)


# --------------------------------------------------------------------------------------------- folder data
def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


@pytest.fixture
def seg_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        img = rng.integers(0, 255, (20, 30, 3))
        mask = np.zeros((20, 30), dtype=np.uint8)
        mask[5:12, 4 + i:20] = 255
        _png(tmp_path / "images" / f"case{i}.png", img)
        name = f"case{i}_mask.png" if i == 2 else f"case{i}.png"  # BUSI-style suffix for one of them
        _png(tmp_path / "masks" / name, mask)
    return tmp_path


def test_folder_dataset(seg_folder):
    ds = SegmentationFolder(seg_folder)
    assert len(ds) == 3
    img, mask, path = ds[2]
    assert img.shape == (3, 20, 30) and img.dtype == torch.float32 and path.endswith("case2.png")
    assert mask.shape == (20, 30) and mask.dtype == torch.long and set(mask.unique().tolist()) == {0, 1}
    assert int(mask.sum()) == 7 * (20 - 6)
    raw = np.array(Image.open(seg_folder / "images" / "case2.png"), dtype=np.float32) / 255
    expected = (raw[0, 0] - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(img[:, 0, 0].numpy(), expected, rtol=1e-5)
    small = SegmentationFolder(seg_folder, size=(10, 16))
    img, mask, _ = small[0]
    assert img.shape == (3, 10, 16) and mask.shape == (10, 16) and set(mask.unique().tolist()) <= {0, 1}


def test_folder_per_class_layout_and_zero_one_masks(tmp_path):
    _png(tmp_path / "images" / "a.png", np.zeros((6, 6, 3)))
    m0 = np.zeros((6, 6))
    m0[:3] = 1      # a 0/1 mask
    m1 = np.zeros((6, 6))
    m1[:, :2] = 255
    _png(tmp_path / "masks" / "0" / "a.png", m0)
    _png(tmp_path / "masks" / "1" / "a.png", m1)
    binary = SegmentationFolder(tmp_path, num_classes=1)[0][1]
    assert int(binary.sum()) == 18  # U-KAN's binary layout: folder 0 only
    multi = SegmentationFolder(tmp_path, num_classes=2)[0][1]
    assert int((multi == 1).sum()) == 12 and int((multi == 0).sum()) == 24


def test_folder_errors(tmp_path):
    with pytest.raises(WorkflowError, match="image folder .* does not exist"):
        tmp_path.joinpath("masks").mkdir()
        SegmentationFolder(tmp_path)
    _png(tmp_path / "images" / "a.png", np.zeros((4, 4, 3)))
    _png(tmp_path / "images" / "b.png", np.zeros((4, 4, 3)))
    _png(tmp_path / "masks" / "a.png", np.zeros((4, 4)))
    with pytest.raises(WorkflowError, match=r"1 image\(s\) have no mask, e.g. \['b.png'\]"):
        SegmentationFolder(tmp_path)
    _png(tmp_path / "masks" / "b.png", np.zeros((5, 4)))
    with pytest.raises(WorkflowError, match="must have the image's size"):
        SegmentationFolder(tmp_path)[1]


# --------------------------------------------------------------------------------------------- evaluation
class _Threshold(torch.nn.Module):
    """A 'model' whose logits are the first channel minus a constant (a known prediction)."""

    num_classes = 1

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        return x[:, :1] + self.bias


def test_evaluate_segmentation_matches_metrics(seg_folder):
    ds = SegmentationFolder(seg_folder)
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    model = _Threshold()
    r = evaluate_segmentation(model, loader, progress=False)
    ref = SegmentationMetrics()
    for img, mask, _ in ds:
        ref.update(model(img[None]), mask[None])
    assert r.as_dict() == pytest.approx(dict(ref.compute().as_dict(), skipped=0), rel=1e-12) and r.images == 3
    assert "pooled over the dataset" in r.format("m") and "mean per image" in r.format("m")
    with pytest.raises(ValueError, match="num_classes=0"):
        bad = _Threshold()
        bad.num_classes = 0
        evaluate_segmentation(bad, loader)


def test_predict_and_overlay(tmp_path, seg_folder):
    model = _Threshold()
    img, _, path = SegmentationFolder(seg_folder)[0]
    mask = predict_masks(model, img[None])[0]
    assert mask.shape == (20, 30) and mask.dtype == torch.long
    assert torch.equal(mask, (img[0] > 0).long())
    out = write_mask_overlay(path, mask, tmp_path / "out" / "overlay.png", alpha=0.5,
                             mask_path=tmp_path / "out" / "mask.png")
    over = np.array(Image.open(out))
    base = np.array(Image.open(path).convert("RGB"), dtype=np.float32)
    sel = mask.numpy() == 1
    expected = np.round(0.5 * base[sel] + 0.5 * np.array([230, 25, 75]))
    np.testing.assert_allclose(over[sel], expected, atol=1)
    np.testing.assert_array_equal(over[~sel], base[~sel])
    bare = np.array(Image.open(tmp_path / "out" / "mask.png"))
    assert set(np.unique(bare)) <= {0, 255} and (bare == 255).sum() == sel.sum()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mask.png", "overlay.png"]  # no temp files
    with pytest.raises(ValueError, match="must end in .png"):
        write_mask_overlay(path, mask, tmp_path / "x.jpg")
    # a mask at another size is resized to the image
    assert overlay_mask(Image.open(path), mask[::2, ::2]).size == (30, 20)


def test_predict_pipeline_for_the_cli(tmp_path, seg_folder):
    """What ``kanzoo predict`` does on a segmentation model: load, preprocess to the cfg size, predict, overlay at
    the image's own size."""
    from kanzoo.workflows.masks import load_rgb, preprocess

    path = seg_folder / "images" / "case1.png"
    x = preprocess(load_rgb(path), size=(16, 24))
    assert x.shape == (3, 16, 24)
    torch.testing.assert_close(x, SegmentationFolder(seg_folder, size=(16, 24))[1][0])
    mask = predict_masks(_Threshold(), x[None])[0]
    out = write_mask_overlay(path, mask, tmp_path / "case1_mask.png")
    assert Image.open(out).size == (30, 20)
