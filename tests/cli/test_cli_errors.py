"""Every failure a command meets in the wild ends as one ``kanzoo: error:`` line, never a traceback: downloads
that break, repos that do not exist, offline mode, damaged files, outputs that cannot be written."""
import json

import pytest
import torch
from safetensors.torch import save_file

import kanzoo
from tests.support.cli_run import one_line_error, run
from tests.support.fakehub import set_offline
from tests.support.hub_files import tiny_repo_files

NAME = "simple_conv_kagn"


def test_a_download_shorter_than_advertised_is_one_line(hub_env, capsys):
    _, files = tiny_repo_files(width_scale=0.25)
    files["config.json"] = json.dumps({"architecture": NAME, "num_classes": 1000, "pretrained_cfg": {}})
    hub_env.hub.create_repo("org/tiny", files=files)
    real = hub_env.hub.files("org/tiny")["model.safetensors"]
    hub_env.hub.corrupt("org/tiny", "model.safetensors", real[: len(real) // 2])
    rc, _, err = run(capsys, "download", "hf-hub:org/tiny")
    assert rc == 1
    one_line_error(err, "org/tiny/model.safetensors")


def test_a_missing_or_private_repo_is_one_line(hub_env, capsys):
    rc, _, err = run(capsys, "download", "hf-hub:org/missing")
    assert rc == 1
    one_line_error(err, "no repo 'org/missing'", "HF_TOKEN")


def test_offline_mode_gives_kanzoos_sentence(hub_env, capsys, monkeypatch, tmp_path):
    set_offline(monkeypatch, True)
    rc, _, err = run(capsys, "download", "hf-hub:org/never-cached")
    assert rc == 1
    one_line_error(err, "offline mode is on (HF_HUB_OFFLINE=1)", "kanzoo download")


def test_a_truncated_adapter_file_is_one_line(tmp_path, capsys):
    peft = kanzoo.peft
    model = kanzoo.create_model(NAME, width_scale=0.25)
    adapted = peft.get_peft_model(model, peft.BasisAdapterConfig())
    adapted.save_pretrained(tmp_path / "adapter")
    weights = tmp_path / "adapter" / peft.WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(kanzoo.errors.WeightsFileError, match="not a readable safetensors file"):
        peft.PeftModel.from_pretrained(kanzoo.create_model(NAME, width_scale=0.25), tmp_path / "adapter")
    rc, _, err = run(capsys, "export", NAME, "--model-kwargs", "width_scale=0.25", "--adapter", tmp_path / "adapter",
                     "--format", "onnx", "--out", tmp_path / "out")
    assert rc == 1
    one_line_error(err, "not a readable safetensors file")


def test_a_damaged_checkpoint_is_called_damaged(tmp_path, capsys):
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": {}}, path)
    path.write_bytes(path.read_bytes()[:30])
    rc, _, err = run(capsys, "validate", NAME, tmp_path, "--checkpoint", path)
    assert rc == 1
    line = one_line_error(err, "checkpoint.pth")
    assert "is damaged" in line and "unpickles" not in line


def test_weights_of_another_width_are_one_line(tmp_path, capsys):
    state = kanzoo.create_model(NAME, width_scale=0.25).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    rc, _, err = run(capsys, "export", NAME, "--checkpoint", tmp_path / "w.safetensors", "--format", "onnx",
                     "--out", tmp_path / "out")
    assert rc == 1
    one_line_error(err, "does not fit simple_conv_kagn", "shapes differ", "w.safetensors")
