"""``kanzoo train`` never "succeeds" on nothing: an epoch without a usable image, too many undecodable images, or an
output folder that cannot be written stop the run with one line, before weights are written; the run folder's
files get ordinary permissions."""
import os
import stat

import pytest
import torch

from kanzoo.workflows import train as train_mod
from tests.support.cli_run import one_line_error, run
from tests.support.workflow_data import FAST, make_dataset, records

NAME = "simple_conv_kagn"
#: FAST without its --max-skipped-fraction, so that the default applies
DEFAULTS = FAST[: FAST.index("--max-skipped-fraction")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


def test_a_folder_where_no_image_decodes_is_an_error(tmp_path, capsys):
    root = tmp_path / "bad"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            (root / c / f"{i}.png").write_bytes(b"\x89PNG but not really")
    rc, out, err = run(capsys, "train", NAME, "--data", root, "-o", tmp_path / "r", "--epochs", "1", "-b", "2",
                       *FAST)
    assert rc == 1
    one_line_error(err, "epoch 1 trained on no image", "6 of 6")
    assert not (tmp_path / "r" / "model.safetensors").exists() and not (tmp_path / "r" / "README.md").exists()


def test_more_undecodable_images_than_allowed_stop_the_run(data, tmp_path, capsys):
    rc, _, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r", "--epochs", "1", "-b", "8",
                     *DEFAULTS)
    assert rc == 1
    one_line_error(err, "would not decode", "--max-skipped-fraction 0.005")
    assert not (tmp_path / "r" / "model.safetensors").exists()
    rc, _, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r2", "--epochs", "1", "-b", "8",
                     *DEFAULTS, "--max-skipped-fraction", "0.2")
    assert rc == 0, err
    rc, _, err = run(capsys, "train", NAME, "--data", data, "--max-skipped-fraction", "1.5", *DEFAULTS)
    one_line_error(err, "--max-skipped-fraction must be in [0, 1], got 1.5")


def test_an_output_under_a_file_is_refused_before_training(data, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc, out, err = run(capsys, "train", NAME, "--data", data, "-o", blocker / "run", *FAST)
    assert rc == 1
    one_line_error(err, "--output", "cannot be created", "is a file")
    assert "epoch" not in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_is_refused_before_training(data, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    rc, _, err = run(capsys, "train", NAME, "--data", data, "-o", ro / "run", *FAST)
    assert rc == 1
    one_line_error(err, "cannot be written")


def test_run_folder_files_get_ordinary_permissions(data, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        rc, _, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r", "--epochs", "1", "-b", "8",
                         *FAST)
    finally:
        os.umask(old)
    assert rc == 0, err
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "r").iterdir() if p.is_file()}
    assert {"model.safetensors", "config.json", "args.json", "checkpoint.pth", "log.jsonl", "README.md"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


def test_the_log_never_records_an_epoch_without_its_checkpoint(data, tmp_path, capsys, monkeypatch):
    real, calls = train_mod.write_checkpoint, []

    def dies_on_the_second(run_dir, state):
        calls.append(state["epoch"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing epoch 2's checkpoint
        real(run_dir, state)

    monkeypatch.setattr(train_mod, "write_checkpoint", dies_on_the_second)
    rc, _, _ = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r", "--epochs", "3", "-b", "8", *FAST)
    assert rc == 130  # the command's exit status for an interrupt
    epochs = [r["epoch"] for r in records(tmp_path / "r", "epoch")]
    checkpoint = torch.load(tmp_path / "r" / "checkpoint.pth", weights_only=True)
    assert calls == [1, 2] and epochs == [1] and checkpoint["epoch"] == 1


def test_resume_removes_the_temporaries_of_an_interrupted_write(data, tmp_path, capsys):
    rc, _, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r", "--epochs", "1", "-b", "8", *FAST)
    assert rc == 0, err
    stale = [tmp_path / "r" / ".checkpoint.pth.k1ll3d.tmp", tmp_path / "r" / ".log.jsonl.x.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (tmp_path / "r" / ".kanzoo-save-zz").mkdir()
    rc, _, err = run(capsys, "train", "--resume", tmp_path / "r", "--epochs", "2", *FAST)
    assert rc == 0, err
    assert not [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")]
