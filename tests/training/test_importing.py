"""importing.inspect / import_model / install on tiny test architectures: the architecture
guessed from the weights, classes and channels read from them, the input spec borrowed from an
installed model, labels defaulted with a warning, a size the network cannot take, and an
atomic install into the user store."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medviewer.inference import ModelError, load_manifest
from medviewer.inference.registry import list_models, user_models_dir
from medviewer.labs.architectures import ARCHITECTURES, Architecture
from medviewer.training import importing


class TinySeg(nn.Module):
    def __init__(self, num_classes: int = 2, in_channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.head = nn.Conv2d(4, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image).relu())


class TinyCls(nn.Module):
    """The same body, pooled into a linear head."""

    def __init__(self, num_classes: int = 2, in_channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(image).mean(dim=(2, 3)))


class Fixed16(TinyCls):
    """Takes 16 x 16 images only (as timm's Swin takes its img_size only)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        torch._assert(image.shape[-1] == 16 and image.shape[-2] == 16, "16 x 16 only")
        return super().forward(image)


def _from_weights(head: str):
    return lambda s: {"num_classes": s[f"{head}.weight"].shape[0],
                      "in_channels": s["body.weight"].shape[1]}


def _arch(name: str, lab: int, task: str, build, head: str, dynamic: bool) -> Architecture:
    axes = {0: "batch", 2: "rows", 3: "columns"} if dynamic else {0: "batch"}
    return ARCHITECTURES.setdefault(name, Architecture(
        name=name, lab=lab, task=task, build=build, input_names=("image",),
        example_inputs=lambda: (torch.rand(2, 1, 16, 16),), output_names=("logits",),
        dynamic_axes={"image": axes, "logits": {0: "batch"}},
        options_from_weights=_from_weights(head)))


SEG = _arch("test.tiny_seg", 4, "segmentation", TinySeg, "head", True)
CLS = _arch("test.tiny_cls", 2, "classification", TinyCls, "fc", True)
FIXED = _arch("test.fixed16", 1, "classification", Fixed16, "fc", False)


def _save(module: nn.Module, path) -> object:
    torch.save({"model": module.state_dict(), "epoch": 9}, path)
    return path


def test_inspect_guesses_the_architecture_classes_and_channels(tmp_path):
    torch.manual_seed(0)
    path = _save(TinySeg(num_classes=3, in_channels=3), tmp_path / "seg.pth")
    found = importing.inspect(path)
    assert (found.kind, found.arch, found.lab, found.task) == ("state-dict", SEG.name, 4,
                                                               "segmentation")
    assert found.guessed and found.num_classes == 3 and found.build == {"in_channels": 3}
    assert found.candidates[0] == (SEG.name, 1.0) and found.report.ok
    assert found.like == _first_lab4_segmenter()  # no shipped architecture fits: the first
    assert found.warnings == ["the weights give 3 classes; they are named class 1..3 until "
                              "labels are given"]
    # a network that fits two architectures equally: the other is named
    twin = importing.inspect(_save(Fixed16(num_classes=4), tmp_path / "twin.pth"), lab=2)
    assert twin.arch == CLS.name
    assert f"the weights fit {FIXED.name} as well as {CLS.name}" in " ".join(twin.warnings)
    # with the lab, the guess stays in that lab; a given architecture is taken as given
    found = importing.inspect(path, lab=2)
    assert found.arch == CLS.name and found.report.looks_like[0] == SEG.name


def test_the_wrong_architecture_says_which_fits(tmp_path):
    path = _save(TinyCls(num_classes=5), tmp_path / "cls.pth")
    found = importing.inspect(path, arch=SEG.name)
    text = found.report.sentence()
    assert text.startswith("2 of 4 tensors loaded; missing: head.bias, head.weight; "
                           "unexpected: fc.bias, fc.weight")
    assert text.endswith(f"these weights look like {CLS.name} (100% of tensors fit): pass "
                         f"--arch {CLS.name}")
    with pytest.raises(ModelError) as err:
        importing.import_model(path, {"input": {"size": [16, 16]}, "plugin": "testlab"},
                               tmp_path / "out", arch=SEG.name)
    assert f"do not fit the architecture {SEG.name}: 2 of 4" in str(err.value)
    assert f"pass --arch {CLS.name}" in str(err.value) and not (tmp_path / "out").exists()
    extra = TinyCls(num_classes=5).state_dict()
    extra["spare.weight"] = torch.zeros(3)  # fits nothing whole: the closest is named
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ModelError, match=f"do not fit the architecture {CLS.name} \\(the "
                                         "closest registered one to these weights\\): 4 of 4 "
                                         "tensors loaded; unexpected: spare.weight"):
        importing.import_model(tmp_path / "extra.pth", {}, tmp_path / "out")


def test_import_reads_classes_and_borrows_the_spec_of_an_installed_model(tmp_path):
    torch.manual_seed(1)
    model = TinySeg(num_classes=3, in_channels=3).eval()
    path = _save(model, tmp_path / "mine.pth")
    steps = []
    manifest, found = importing.import_model(path, {}, tmp_path / "mine",
                                             progress=lambda what, done: steps.append(done))
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)
    assert manifest.label_names == ["class 1", "class 2", "class 3"]
    assert any("class 1..3 until you give labels" in w for w in found.warnings)
    shipped = load_manifest(importing_root() / _first_lab4_segmenter())  # the similar model
    assert found.like == shipped.id and any(shipped.id in w for w in found.warnings)
    assert (manifest.plugin, manifest.input.size, manifest.input.window) == (
        shipped.plugin, shipped.input.size, shipped.input.window)
    assert manifest.input.channels == 3  # the weights' channels, not the borrowed 1
    assert manifest.options["build"] == {"in_channels": 3}
    x = torch.rand(1, 3, *shipped.input.size)
    import onnxruntime as ort

    got = ort.InferenceSession(str(manifest.path("model.onnx"))).run(None, {"image": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got[0]), model(x), rtol=1e-4, atol=1e-5)


def importing_root():
    from medviewer.inference.registry import shipped_models_dir

    return shipped_models_dir()


def test_labels_must_match_the_weights_classes(tmp_path):
    path = _save(TinySeg(num_classes=3), tmp_path / "seg.pth")
    with pytest.raises(ModelError, match="The weights give 3 classes but 2 labels were given "
                                         r"\(a, b\); give 3 labels"):
        importing.import_model(path, {"labels": ["a", "b"]}, tmp_path / "out")
    with pytest.raises(ModelError, match="take 3 input channels; --channels 1"):
        importing.import_model(_save(TinySeg(3, 3), tmp_path / "rgb.pth"),
                               {"input": {"channels": 1}}, tmp_path / "out")


def test_a_one_output_classifier_is_refused_with_what_to_do(tmp_path):
    """softmax over one logit is always 1.0: a sigmoid classifier would call every slice."""
    path = _save(TinyCls(num_classes=1), tmp_path / "bce.pth")
    with pytest.raises(ModelError, match="one output .*torch.cat"):
        importing.import_model(path, {"labels": ["nodule"]}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_build_options_it_cannot_take_are_a_sentence(tmp_path):
    path = _save(TinySeg(), tmp_path / "seg.pth")
    with pytest.raises(ModelError, match=r"test.tiny_seg cannot be built with the options "
                                         r"\{'in_channels': 'two'\}.*fix --build"):
        importing.import_model(path, {"options": {"build": {"in_channels": "two"}}},
                               tmp_path / "out", arch=SEG.name)


def test_a_size_the_network_cannot_take(tmp_path):
    path = _save(Fixed16(num_classes=10), tmp_path / "fixed.pth")
    with pytest.raises(ModelError, match=r"test.fixed16 cannot take 32x32 images \(it runs at "
                                         r"16x16\); pass another --size"):
        importing.import_model(path, {"input": {"size": [32, 32]}}, tmp_path / "out",
                               arch=FIXED.name)
    # the borrowed size (lab 1's 8 x 8 digits) does not fit either: the network's own is used
    manifest, found = importing.import_model(path, {}, tmp_path / "out", arch=FIXED.name)
    assert manifest.input.size == (16, 16)
    assert any("cannot take 8x8 images: input size 16x16" in w for w in found.warnings)


def test_install_moves_a_folder_into_the_store_atomically(tmp_path, monkeypatch):
    path = _save(TinyCls(), tmp_path / "cls.pth")
    fields = {"id": "my-cls", "version": "2.0.0", "labels": ["no", "yes"]}
    importing.import_model(path, fields, tmp_path / "preview")
    installed = importing.install(tmp_path / "preview")
    target = user_models_dir() / "my-cls" / "2.0.0"
    assert installed.folder == target and load_manifest(target).label_names == ["no", "yes"]
    assert not (tmp_path / "preview").exists()
    importing.import_model(path, {**fields, "labels": ["n", "y"]}, tmp_path / "again")
    with pytest.raises(ModelError, match="already installed"):
        importing.install(tmp_path / "again")

    def killed(staging, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("medviewer.training.export._replace_folder", killed)
    with pytest.raises(OSError):
        importing.install(tmp_path / "again", force=True)
    assert load_manifest(target).label_names == ["no", "yes"]  # the old one, whole
    assert load_manifest(tmp_path / "again").label_names == ["n", "y"]  # the caller's, kept
    assert [p.name for p in target.parent.iterdir()] == ["2.0.0"]  # no staging left behind
    monkeypatch.undo()
    assert importing.install(tmp_path / "again", force=True).label_names == ["n", "y"]


def test_weights_holding_nan_are_not_exported(tmp_path):
    model = TinyCls()
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match=r"NaN or infinite values \(fc.weight\)"):
        importing.import_model(_save(model, tmp_path / "nan.pth"), {"labels": ["a", "b"]},
                               tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _first_lab4_segmenter() -> str:
    """The installed model of lab 4 and its task that an import borrows from when no installed
    one has its architecture: the first by id."""
    return min(m.id for m in list_models()[0] if m.lab == 4 and m.task == "segmentation")
