"""``kanzoo train`` with the S-KAN selection schedule: full training, selective training (each channel's top-k,
mixing weights frozen), then the pruned model; logged, resumable bit for bit, and the run folder loads and
exports. Tiny s_convkan_tiny runs on a generated ImageFolder (docs/selectable.md)."""
import contextlib
import io
import json
import shutil

import pytest
import torch

import kanzoo
from kanzoo.cli import main
from kanzoo.layers import KANConvNd, NotPrunedError, PrunedKANConvNd, selectable_layers
from kanzoo.workflows import train as train_mod
from tests.support.cli_run import one_line_error, run
from tests.support.kan_layer_cases import single_thread
from tests.support.workflow_data import make_dataset, records, weights

NAME = "s_convkan_tiny"
# widths (8, 16, 32, 64) x 0.25 = 2, 4, 8, 16 channels; RGB input (the tiny model is 1-channel by default)
# (the data holds one undecodable image on purpose: 1 of 16, above the default 0.5% a run allows)
SMALL = ["--model-kwargs", "width_scale=0.25", "in_chans=3", "--img-size", "16", "-j", "0", "--no-progress",
         "-b", "8", "--log-interval", "1", "--max-skipped-fraction", "0.1"]
CHANNELS = 2 + 4 + 8 + 16
# 4 epochs: 1 full, 1 selective, 2 pruned (so that a checkpoint exists from each phase before the end)
PHASES = ["--epochs", "4", "--select-epoch", "1", "--prune-epoch", "2"]

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("sel") / "data")


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """One uninterrupted 3-phase run; records the parameters around every epoch and the trainer's result."""
    run_dir = tmp_path_factory.mktemp("runs") / "straight"
    epochs, results = [], []
    real_epoch, real_train = train_mod.train_one_epoch, train_mod.train

    def recording(tr, epoch):
        before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
        out = real_epoch(tr, epoch)
        after = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
        grad = {n: p.requires_grad for n, p in tr.model.named_parameters()}
        epochs.append(dict(before=before, after=after, requires_grad=grad))
        return out

    def keep_result(*args, **kwargs):
        results.append(real_train(*args, **kwargs))
        return results[-1]

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setattr(train_mod, "train_one_epoch", recording)
        mp.setattr(train_mod, "train", keep_result)
        rc = main(["train", NAME, "--data", str(data), "-o", str(run_dir), *PHASES, "--seed", "3", *SMALL])
    assert rc == 0
    return dict(run_dir=run_dir, epochs=epochs, result=results[0], out=stdout.getvalue())


def test_phases_are_logged_and_printed(straight):
    run_dir, out = straight["run_dir"], straight["out"]
    phases = [r["phase"] for r in records(run_dir, "epoch")]
    assert phases == ["full", "select", "pruned", "pruned"]
    events = records(run_dir, "selection")
    assert [(r["event"], r["epoch"], r["after_epoch"]) for r in events] == [("select", 2, 1), ("prune", 3, 2)]
    select, prune = events
    assert select["params"] == select["params_before"] == prune["params_before"] > prune["params"]
    assert sum(prune["bases"].values()) == sum(select["bases"].values()) == CHANNELS  # top-1: one basis each
    assert set(prune["layers"]) == {f"stages.{i}" for i in range(4)} and prune["step"] == 4
    # the log keeps its order: each event sits between the epoch before it and the steps after it
    kinds = [(r["kind"], r["epoch"]) for r in records(run_dir) if r["kind"] != "step"]
    assert kinds == [("epoch", 1), ("selection", 2), ("epoch", 2), ("selection", 3), ("epoch", 3), ("epoch", 4)]
    assert ("basis selection: every basis for epochs 1-1, then each channel's top-1 (mixing weights frozen); "
            "pruned after epoch 2 (--select-epoch 1 --prune-epoch 2 --select-top-k 1)") in out
    assert "after epoch 1: kept each channel's top-1 basis (mixing weights frozen): " in out
    line = next(ln for ln in out.splitlines() if ln.startswith("after epoch 2: pruned: "))
    assert line.startswith(f"after epoch 2: pruned: {prune['params_before']:,} -> {prune['params']:,} parameters; "
                           f"bases chosen: ")
    shares = [int(part.rsplit(" ", 1)[1].rstrip("%")) for part in line.split("bases chosen: ")[1].split(", ")]
    assert shares == sorted(shares, reverse=True) and abs(sum(shares) - 100) <= len(shares)
    assert out.index("epoch 2/4") < out.index("after epoch 2: pruned") < out.index("epoch 3/4")


def test_alphas_train_then_freeze(straight):
    full, select = straight["epochs"][0], straight["epochs"][1]
    alphas = [n for n in full["before"] if n.endswith(".alpha")]
    assert len(alphas) == 4
    assert all(full["requires_grad"][n] for n in alphas)
    assert any(not torch.equal(full["before"][n], full["after"][n]) for n in alphas)  # phase 1 trains them
    # phase 2: the alphas are frozen (not even AdamW's momentum moves them), everything else still trains
    assert not any(select["requires_grad"][n] for n in alphas)
    assert all(torch.equal(select["before"][n], select["after"][n]) for n in alphas)
    assert all(torch.equal(full["after"][n], select["before"][n]) for n in alphas)
    others = [n for n in select["before"] if not n.endswith(".alpha")]
    assert all(select["requires_grad"][n] for n in others)
    assert sum(not torch.equal(select["before"][n], select["after"][n]) for n in others) > len(others) // 2
    # phase 3 trains a model without them
    assert not any(n.endswith(".alpha") for n in straight["epochs"][2]["before"])


def test_final_model_is_pruned_and_the_run_folder_loads_and_exports(straight, tmp_path):
    from kanzoo.export import to_onnx

    run_dir, result = straight["run_dir"], straight["result"]
    model = result.model
    assert not selectable_layers(model)
    assert all(isinstance(m, (KANConvNd, PrunedKANConvNd)) for m in model.stages)
    unpruned = kanzoo.create_model(NAME, width_scale=0.25, in_chans=3, num_classes=3)
    assert result.params == sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in unpruned.parameters())
    config = json.loads((run_dir / "config.json").read_text())
    spec = config["model_args"]["pruned_selection"]
    assert set(spec) == {f"stages.{i}" for i in range(4)} and len(spec["stages.3"].split(",")) == 16

    loaded = kanzoo.create_model(f"local-dir:{run_dir}", pretrained=True).eval()
    assert [type(m) for m in loaded.stages] == [type(m) for m in model.stages]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    # the last checkpoint holds the same pruned model, rebuilt from its model args
    ckpt = torch.load(run_dir / "checkpoint.pth", weights_only=True)
    assert ckpt["model_args"]["pruned_selection"] == spec and ckpt["selection"]["state"] == "pruned"
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in loaded.state_dict().items())

    report = to_onnx(loaded, tmp_path / "m.onnx", verbose=False)
    assert report.max_abs_diff <= report.tolerance and (tmp_path / "m.onnx").is_file()


@pytest.mark.parametrize("stop", [2, 3], ids=["from-the-selective-phase", "from-the-pruned-phase"])
def test_resume_equals_the_uninterrupted_run(straight, data, tmp_path, capsys, monkeypatch, stop):
    resumed = tmp_path / "resumed"
    real = train_mod.train_one_epoch

    def interrupted(tr, epoch):
        if epoch == stop:
            real(tr, epoch)
            raise KeyboardInterrupt
        return real(tr, epoch)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted)
    rc, _, err = run(capsys, "train", NAME, "--data", data, "-o", resumed, *PHASES, "--seed", "3", *SMALL, "-q")
    assert rc == 130, err
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    ckpt = torch.load(resumed / "checkpoint.pth", weights_only=True)
    assert ckpt["epoch"] == stop
    assert ckpt["selection"]["state"] == ("select" if stop == 2 else "pruned")
    assert ("pruned_selection" in ckpt["model_args"]) == (stop == 3)

    rc, out, err = run(capsys, "train", "--resume", resumed, "--no-quiet")
    assert rc == 0, err
    assert f"resuming {resumed} after epoch {stop}/4" in out
    assert ("after epoch 2: pruned" in out) == (stop == 2)  # replayed where it had not happened yet
    a, b = weights(straight["run_dir"]), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rs]  # noqa: E731
    assert drop(records(straight["run_dir"])) == drop(records(resumed))
    ca = torch.load(straight["run_dir"] / "checkpoint.pth", weights_only=True)
    cb = torch.load(resumed / "checkpoint.pth", weights_only=True)
    assert ca["selection"]["masks"] == cb["selection"]["masks"] and ca["model_args"] == cb["model_args"]
    assert [h["phase"] for h in cb["selection"]["history"]] == ["full", "select", "pruned", "pruned"]


def test_pretrained_cfg_phases_and_pruning_after_the_last_epoch(data, tmp_path, capsys):
    # s_convkan_tiny's cfg: select after 6 epochs, prune after 8 -> with --epochs 7, after the last epoch
    rc, out, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r", "--epochs", "7", *SMALL)
    assert rc == 0, err
    assert "every basis for epochs 1-6, then each channel's top-1" in out
    assert "pruned after epoch 7 (the last) (--select-epoch 6 --prune-epoch 7 --select-top-k 1)" in out
    assert "after epoch 6: kept" in out and "after epoch 7: pruned: " in out
    assert [r["phase"] for r in records(tmp_path / "r", "epoch")] == ["full"] * 6 + ["select"]
    loaded = kanzoo.create_model(f"local-dir:{tmp_path / 'r'}", pretrained=True)
    assert not selectable_layers(loaded)


def test_top_k_two_selected_and_pruned_together(data, tmp_path, capsys):
    rc, out, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r", "--epochs", "2",
                       "--select-epoch", "1", "--prune-epoch", "1", "--select-top-k", "2", *SMALL)
    assert rc == 0, err
    events = records(tmp_path / "r", "selection")
    assert [r["event"] for r in events] == ["prune"] and sum(events[0]["bases"].values()) == 2 * CHANNELS
    loaded = kanzoo.create_model(f"local-dir:{tmp_path / 'r'}", pretrained=True)
    assert all(isinstance(m, PrunedKANConvNd) and m.index.shape[0] == 2 for m in loaded.stages)


def test_no_selection_trains_the_mixture_and_refuses_export(data, tmp_path, capsys):
    from kanzoo.export import to_onnx

    rc, out, err = run(capsys, "train", NAME, "--data", data, "-o", tmp_path / "r", "--epochs", "1",
                       "--no-selection", *SMALL)
    assert rc == 0, err
    assert "basis selection: off (--no-selection)" in out and not records(tmp_path / "r", "selection")
    loaded = kanzoo.create_model(f"local-dir:{tmp_path / 'r'}", pretrained=True).eval()
    assert len(selectable_layers(loaded)) == 4
    with pytest.raises(NotPrunedError, match="Prune first"):
        to_onnx(loaded, tmp_path / "m.onnx", verbose=False)


@pytest.mark.parametrize("argv, message", [
    ([NAME, "--epochs", "3", "--select-epoch", "0"], "--select-epoch must be an integer >= 1, got 0"),
    ([NAME, "--epochs", "3", "--select-epoch", "2", "--prune-epoch", "1"],
     "--prune-epoch 1 comes before --select-epoch 2"),
    ([NAME, "--epochs", "3", "--select-epoch", "1", "--prune-epoch", "4"], "--prune-epoch 4 is past --epochs 3"),
    ([NAME, "--epochs", "3", "--select-epoch", "1", "--select-top-k", "6"],
     "--select-top-k 6 is more than the 5 candidate bases"),
    ([NAME, "--epochs", "3", "--select-top-k", "0"], "--select-top-k must be an integer >= 1, got 0"),
    ([NAME, "--epochs", "3", "--no-selection", "--prune-epoch", "2"], "--no-selection turns basis selection off"),
    ([NAME, "--epochs", "3"], "s_convkan_tiny's pretrained cfg selects after 6 epochs, past --epochs 3"),
    ([NAME, "--epochs", "7", "--prune-epoch", "3"], "--prune-epoch 3 comes before the selection after 6 epochs"),
    (["simple_conv_kagn", "--epochs", "3", "--select-epoch", "1"],
     "simple_conv_kagn has no selectable KAN layers"),
])
def test_bad_selection_options_are_one_line_errors_before_training(data, tmp_path, capsys, argv, message):
    out_dir = tmp_path / "r"
    rc, _, err = run(capsys, "train", *argv, "--data", data, "-o", out_dir, *SMALL)
    assert rc == 1
    one_line_error(err, message)
    assert not out_dir.exists()  # nothing trained, nothing written


def test_selection_options_errors_with_peft_and_on_resume(straight, data, tmp_path, capsys):
    rc, _, err = run(capsys, "finetune", NAME, "--data", data, "-o", tmp_path / "a", "--peft", "rank=2",
                     "--select-epoch", "1", *SMALL)
    one_line_error(err, "--select-epoch cannot go with --peft")
    copy = tmp_path / "copy"
    shutil.copytree(straight["run_dir"], copy)
    rc, _, err = run(capsys, "train", "--resume", copy, "--prune-epoch", "3")
    one_line_error(err, "--prune-epoch cannot change when resuming")
