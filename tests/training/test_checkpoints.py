"""Reading torch checkpoints as users have them, and fitting their names to an architecture's
(medviewer.training.checkpoints): no code in a file runs unless it is trusted."""

from __future__ import annotations

import os
from collections import OrderedDict

import pytest
import torch
from torch import nn

from medviewer.inference import ModelError
from medviewer.training.checkpoints import read_state
from medviewer.training.importing import parse_map
from medviewer.training.keymatch import align, apply_maps


class Net(nn.Module):
    """A two-layer network: a conv with a BatchNorm and a linear head."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, classes)


class Marker:
    """Unpickling it runs os.system, which would create the marker file."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch '{self.path}'",)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def state() -> OrderedDict:
    torch.manual_seed(0)
    return Net().state_dict()


WRAPPED = {
    "plain": lambda s: s,
    "state_dict": lambda s: {"state_dict": s, "epoch": 7, "optimizer": {"lr": 0.1}},
    "model": lambda s: {"model": s, "args": "--lr 0.1"},
    "model_state_dict": lambda s: {"model_state_dict": s, "optimizer_state_dict": {}},
    "ema": lambda s: {"state_dict_ema": s, "ema": s, "hyper": [1, 2]},
    "ddp": lambda s: {"module." + k: v for k, v in s.items()},
    "compiled": lambda s: {"_orig_mod." + k: v for k, v in s.items()},
    "ddp+compiled in a wrapper": lambda s: {"net": {f"module._orig_mod.{k}": v
                                                    for k, v in s.items()}},
    "lightning": lambda s: {"state_dict": {f"model.{k}": v for k, v in s.items()},
                            "pytorch-lightning_version": "2.2", "global_step": 10,
                            "hyper_parameters": {"lr": 1e-3}},
}


@pytest.mark.parametrize("form", list(WRAPPED))
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_wrapped_state_dicts_are_read_without_trust(form, legacy, state, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(WRAPPED[form](state), path, _use_new_zipfile_serialization=not legacy)
    got, kind = read_state(path)
    assert kind == "state-dict"
    assert _same(got, dict(state))


def test_safetensors_is_read(state, tmp_path):
    from safetensors.torch import save_file

    save_file({f"module.{k}": v for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    got, kind = read_state(tmp_path / "w.safetensors")
    assert kind == "safetensors" and _same(got, dict(state))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_malicious_pickle_is_refused_and_nothing_runs(legacy, state, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": state, "hook": Marker(marker)}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ModelError) as err:
        read_state(path)
    assert "system" in str(err.value) and "run code" in str(err.value)
    assert "--trust-pickle" in str(err.value)
    assert not marker.exists()
    got, _ = read_state(path, trust_pickle=True)  # the control: trusted, the file's code runs
    assert marker.exists() and _same(got, dict(state))


class Config:
    """A training script's settings object; unpickling it for real calls __setstate__."""

    def __init__(self, marker) -> None:
        self.marker, self.lr = str(marker), 0.1

    def __setstate__(self, state) -> None:
        open(state["marker"], "w").close()
        self.__dict__.update(state)


def test_objects_beside_the_weights_are_stood_in_for_and_never_run(state, tmp_path):
    import argparse

    marker = tmp_path / "ran"
    path = tmp_path / "timm.pth"  # timm's train.py saves its argparse Namespace beside them
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1), "cfg": Config(marker),
                "epoch": 3}, path)
    got, kind = read_state(path)
    assert kind == "state-dict" and _same(got, dict(state))
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the control: really unpickled, Config runs
    assert marker.exists()


def test_a_whole_pickled_module_needs_trust(tmp_path):
    torch.manual_seed(1)
    net = Net()
    for name, obj in (("module", net), ("wrapped", {"model": net, "epoch": 3})):
        path = tmp_path / f"{name}.pt"
        torch.save(obj, path)
        with pytest.raises(ModelError, match="whole pickled model .*Net.*--trust-pickle"):
            read_state(path)
        got, kind = read_state(path, trust_pickle=True)
        assert kind == "pickled-module" and _same(got, dict(net.state_dict()))


def test_not_a_checkpoint_is_a_sentence(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="neither a safetensors file"):
        read_state(tmp_path / "notes.txt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "empty.pt")
    with pytest.raises(ModelError, match="No weights found .*epoch, lr"):
        read_state(tmp_path / "empty.pt")
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(tmp_path / "ts.pt"))
    with pytest.raises(ModelError, match="TorchScript"):
        read_state(tmp_path / "ts.pt")


# --- alignment -----------------------------------------------------------------------------

def _shapes(module: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


class Wrapper(nn.Module):
    """The project's wrapper around the same network (`detector.` in front of every name)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.detector = Net(classes)


class Renamed(nn.Module):
    """Another script's names for the parts: backbone for conv/bn, classifier for fc."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv, self.backbone.bn = nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4)
        self.classifier = nn.Linear(4, classes)


def test_exact_names_load_with_no_rename(state):
    aligned, report = align(dict(state), _shapes(Net()))
    assert report.ok and report.renamed == [] and _same(aligned, dict(state))
    assert report.sentence() == f"{len(state)} of {len(state)} tensors loaded"


def test_a_missing_prefix_is_found(state):
    aligned, report = align(dict(state), _shapes(Wrapper()))
    assert report.ok and report.renamed == [("", "detector")]
    assert torch.equal(aligned["detector.fc.weight"], state["fc.weight"])
    assert "renamed * -> detector.*" in report.sentence()
    back, report = align(Wrapper().state_dict(), _shapes(Net()))  # and one too many
    assert report.ok and report.renamed == [("detector", "")]


def test_prefixes_and_a_unique_leftover_module_are_renamed(state):
    aligned, report = align(dict(state), _shapes(Renamed()))
    assert report.ok, report.sentence()
    assert set(report.renamed) == {("", "backbone"), ("fc", "classifier")}
    assert torch.equal(aligned["classifier.bias"], state["fc.bias"])
    # the head's class count differs: renamed all the same, and named as a shape mismatch
    _, report = align(dict(state), _shapes(Renamed(classes=5)))
    assert ("fc", "classifier") in report.renamed and not report.ok
    assert report.mismatched == [("classifier.bias", (3,), (5,)),
                                 ("classifier.weight", (3, 4), (5, 4))]
    assert "classifier.weight (checkpoint (3, 4) vs model (5, 4))" in report.sentence()


def test_user_maps_apply_first():
    assert parse_map("resnet.=backbone") == ("resnet", "backbone")
    assert parse_map("=net") == ("", "net")
    assert apply_maps("resnet.conv1.weight", [("resnet", "backbone")]) == "backbone.conv1.weight"
    assert apply_maps("resnetx.w", [("resnet", "backbone")]) == "resnetx.w"  # whole parts only
    with pytest.raises(ModelError, match="OLD_PREFIX=NEW_PREFIX"):
        parse_map("resnet")
    twins = nn.Module()  # two modules of one shape: only their order tells them apart
    twins.first, twins.second = nn.Linear(3, 3), nn.Linear(3, 3)
    source = {"a.weight": torch.ones(3, 3), "a.bias": torch.zeros(3),
              "b.weight": 2 * torch.ones(3, 3), "b.bias": torch.ones(3)}
    aligned, report = align(source, _shapes(twins))  # paired in order, each rename listed
    assert report.ok and report.renamed == [("a", "first"), ("b", "second")]
    assert torch.equal(aligned["first.weight"], source["a.weight"])
    _, report = align({"b.weight": source["b.weight"], "b.bias": source["b.bias"],
                       "c.weight": torch.ones(3, 4), "c.bias": torch.ones(3)}, _shapes(twins))
    assert not report.ok and report.mismatched  # in order, but one is of another shape
    aligned, report = align(source, _shapes(twins), [("a", "second"), ("b", "first")])
    assert report.ok and report.renamed == []
    assert torch.equal(aligned["second.weight"], source["a.weight"])
    _, report = align(source, _shapes(twins), [("a", "first"), ("b", "first")])  # a clash
    assert report.unexpected == ["b.bias", "b.weight"] and report.missing == [
        "second.bias", "second.weight"]


def test_the_report_names_what_did_not_fit(state):
    source = dict(state)
    source["extra.weight"] = torch.zeros(2)
    del source["conv.bias"]
    source["conv.weight"] = torch.zeros(4, 1, 3, 3)
    _, report = align(source, _shapes(Net()))
    assert (report.total, report.loaded) == (len(state), len(state) - 2)
    assert report.missing == ["conv.bias"] and report.unexpected == ["extra.weight"]
    assert report.mismatched == [("conv.weight", (4, 1, 3, 3), (4, 2, 3, 3))]
    text = report.sentence()
    assert text.startswith(f"{len(state) - 2} of {len(state)} tensors loaded; ")
    assert "missing: conv.bias; unexpected: extra.weight; shape mismatches: conv.weight " \
           "(checkpoint (4, 1, 3, 3) vs model (4, 2, 3, 3))" in text


def test_long_lists_are_cut_and_old_batchnorm_counters_are_filled(state):
    source = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    _, report = align(source, _shapes(Net()))
    assert report.ok and report.filled == ["bn.num_batches_tracked"]
    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(4)])
    _, report = align({}, _shapes(big))
    assert report.sentence() == ("0 of 8 tensors loaded; missing: 0.bias, 0.weight, 1.bias, "
                                 "1.weight, 2.bias (+3 more)")
