"""Bring your own model: a checkpoint or a self-contained model file -> a MedViewer model folder.

The one entry point `medviewer export` and Model > Import Model... share (issue 13):

- torch checkpoints (safetensors; `torch.save` state dicts read with weights_only=True, inside
  the usual wrappers and prefixes; a whole pickled module only when trusted) are fitted to a
  registered architecture key for key (medviewer.training.checkpoints reads them,
  medviewer.training.keymatch fits the names), with a KeyReport;
- self-contained files (ONNX, TorchScript, torch.export .pt2) need no architecture
  (medviewer.training.foreign): their graph is read, converted to ONNX where needed, its inputs
  and outputs renamed to the lab's, checked on a probe input.

Both end in a parity-checked model folder written atomically (training/export.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medviewer.inference.manifest import Manifest

# what a file is, as `inspect` tells it
KINDS = ("safetensors", "state-dict", "pickled-module", "onnx", "torchscript", "exported-program")
SELF_CONTAINED = ("onnx", "torchscript", "exported-program")
LAB_TASKS = {1: "classification", 2: "classification", 3: "fusion", 4: "segmentation",
             5: "detection"}

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


LIST_CUT = 5  # names shown per list in a report sentence


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _cut(names: Sequence[str]) -> str:
    more = f" (+{len(names) - LIST_CUT} more)" if len(names) > LIST_CUT else ""
    return ", ".join(names[:LIST_CUT]) + more


@dataclass
class KeyReport:
    """How a checkpoint's tensors met an architecture's."""

    total: int  # tensors the architecture expects
    loaded: int  # of those, found with the right name and shape
    missing: list[str] = field(default_factory=list)  # the model's names nothing fed
    unexpected: list[str] = field(default_factory=list)  # the checkpoint's names left over
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list)  # (name, checkpoint shape, model shape)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # prefixes mapped (old, new)
    looks_like: list[str] = field(default_factory=list)  # other architectures that fit better
    # BatchNorm counters the checkpoint lacked, kept at the model's value (counted as loaded)
    filled: list[str] = field(default_factory=list)
    fits: dict[str, float] = field(default_factory=dict)  # looks_like's share of tensors fit

    @property
    def ok(self) -> bool:
        return self.loaded == self.total and not (self.unexpected or self.mismatched)

    def sentence(self) -> str:
        """'N of M tensors loaded; missing: ...; unexpected: ...; shape mismatches: name
        (checkpoint shape vs model shape)' and, when it applies, which architecture it looks
        like. Long lists are cut with a count of the rest."""
        parts = [f"{self.loaded} of {self.total} tensors loaded"]
        if self.renamed:
            parts.append("renamed " + ", ".join(f"{_star(old)} -> {_star(new)}"
                                                for old, new in self.renamed))
        if self.missing:
            parts.append(f"missing: {_cut(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected: {_cut(self.unexpected)}")
        if self.mismatched:
            parts.append("shape mismatches: " + _cut([
                f"{name} (checkpoint {_shape(c)} vs model {_shape(m)})"
                for name, c, m in self.mismatched]))
        text = "; ".join(parts)
        if self.looks_like:
            best = self.looks_like[0]
            share = self.fits.get(best)
            fit = f" ({share:.0%} of tensors fit)" if share is not None else ""
            text += f"; these weights look like {best}{fit}: pass --arch {best}"
        return text


def _star(prefix: str) -> str:
    return f"{prefix}.*" if prefix else "*"


@dataclass
class Inspection:
    """What a model file is and what MedViewer guesses about it (all editable by the user)."""

    path: Path
    kind: str  # one of KINDS
    lab: int | None = None
    task: str | None = None
    arch: str | None = None  # the best registered architecture (torch checkpoints only)
    candidates: list[tuple[str, float]] = field(default_factory=list)  # (arch, fit 0..1)
    build: dict[str, Any] = field(default_factory=dict)  # build options from tensor shapes
    num_classes: int | None = None
    inputs: dict[str, list] = field(default_factory=dict)  # graph input -> shape (str: dynamic)
    outputs: dict[str, list] = field(default_factory=dict)
    report: KeyReport | None = None
    warnings: list[str] = field(default_factory=list)
    guessed: bool = False  # arch guessed from the weights (not given)
    like: str | None = None  # the installed model whose input spec fills the gaps (its id)


def inspect(path: str | Path, *, trust_pickle: bool = False, arch: str | None = None,
            maps: Sequence[tuple[str, str]] = (), lab: int | None = None) -> Inspection:
    """Read `path` (no code from it runs unless `trust_pickle`) and guess lab, task, arch,
    classes and build options. ModelError with a sentence when it cannot be read."""

    path = Path(path)
    kind = _foreign_kind(path)
    if kind is not None:
        found = _foreign().inspect_file(path, kind)
        if lab is not None or found.lab in LAB_TASKS:
            _self_contained(found, lab)
    else:
        from medviewer.training.checkpoints import read_state

        state, kind = read_state(path, trust_pickle=trust_pickle)
        found = _inspect_state(path, state, kind, arch, maps, lab, {})
        if found.num_classes is not None:
            found.warnings.append(f"the weights give {found.num_classes} classes; they are "
                                  f"named class 1..{found.num_classes} until labels are given")
    if found.lab is not None and found.task is not None:
        like = similar_model(found.lab, found.task, found.arch)
        found.like = like.id if like is not None else None
    return found


def import_model(path: str | Path, fields: dict[str, Any], out: str | Path, *,
                 arch: str | None = None, maps: Sequence[tuple[str, str]] = (),
                 trust_pickle: bool = False, force: bool = False,
                 progress: Progress | None = None) -> tuple[Manifest, Inspection]:
    """Export `path` into the model folder `out` (parity-checked, atomic).

    `fields`: the manifest fields the caller knows (id, title, version, lab, plugin, labels,
    input, options, metrics, provenance, description; "like": an installed model's id whose
    input spec, labels and plugin fill what is not given); labels missing -> "class 1..K" with
    a warning in the Inspection. `arch` None: guessed (torch) or not needed (self-contained).
    ModelError (its text a sentence, with the key report for torch files) when it does not fit.
    """
    path, out = Path(path), Path(out)
    step = progress or (lambda _what, _done: None)
    step("reading the file", 0.0)
    from medviewer.training import import_fields as fill

    kind = _foreign_kind(path)
    if kind is not None:
        foreign = _foreign()
        inspection = _self_contained(foreign.inspect_file(path, kind), fields.get("lab"))
        complete = fill.complete_fields(None, fields, inspection)
        manifest = foreign.export_self_contained(path, kind, complete, out, force=force,
                                                 progress=progress)
        return manifest, inspection
    from medviewer.training import checkpoints
    from medviewer.training.export import export_model

    state, kind = checkpoints.read_state(path, trust_pickle=trust_pickle)
    step("fitting the weights to the architectures", 0.15)
    given = dict(fields.get("options", {}).get("build", {}))
    inspection = _inspect_state(path, state, kind, arch, maps, fields.get("lab"), given)
    architecture = _architecture(inspection.arch)
    if inspection.report.missing or inspection.report.unexpected:  # names: before any field
        from medviewer.inference.errors import ModelError

        raise ModelError(path, not_fitting(architecture.name, inspection.report,
                                          inspection.guessed))
    complete = fill.complete_fields(architecture, fields, inspection)
    fill.check_out_folder(out, force)
    step("loading the weights", 0.3)
    model = _load(architecture, inspection, state, maps, path)
    step("exporting to ONNX and checking it against torch", 0.5)
    inputs = fill.export_inputs(architecture, complete["input"])
    manifest = export_model(model, architecture, out, complete, inputs)
    step("done", 1.0)
    return manifest, inspection


def install(folder: str | Path, *, force: bool = False) -> Manifest:
    """Move an exported folder (e.g. the one Preview made in a temporary place) into the user
    model store as <id>/<version>, atomically; ModelError when that version exists and not
    `force`."""
    from medviewer.training.import_fields import install_folder

    return install_folder(Path(folder), force=force)


# --------------------------------------------------------------------------- torch checkpoints

def _inspect_state(path: Path, state: dict, kind: str, arch_name: str | None,
                   maps: Sequence[tuple[str, str]], lab: int | None, given: dict) -> Inspection:
    from medviewer.inference.errors import ModelError
    from medviewer.training import keymatch

    ranking = _ranking(state, maps, given)
    if arch_name is not None:
        arch = _architecture(arch_name)
        if lab is not None and arch.lab != lab:
            raise ModelError(None, f"{arch.name} is a lab {arch.lab} architecture, not lab "
                             f"{lab}; fix --lab or --arch.")
        try:
            share, options, report, _ = keymatch.fit(arch, state, maps, given)
        except Exception as exc:  # noqa: BLE001 - a builder given options it cannot take
            raise _unbuildable(arch.name, given, exc) from exc
    else:
        mine = [r for r in ranking if lab is None or r[1].lab == lab]
        if not mine or mine[0][0] <= 0:
            best = f" (the closest: {ranking[0][1].name}, {ranking[0][0]:.0%} of tensors fit)" \
                if ranking and ranking[0][0] > 0 else ""
            raise ModelError(path, f"These weights fit none of the registered architectures"
                             f"{' of lab ' + str(lab) if lab else ''}{best}; pick one with "
                             "--arch and map names with --map OLD=NEW if needed.")
        share, arch, options, report = mine[0]
    better = [(s, a.name) for s, a, _, _ in ranking if s > share and a.name != arch.name]
    report.looks_like = [name for _, name in better]
    report.fits = {name: s for s, name in better}
    inspection = Inspection(path=path, kind=kind, lab=arch.lab, task=arch.task, arch=arch.name,
                            candidates=[(a.name, s) for s, a, _, _ in ranking],
                            build={k: v for k, v in options.items() if k != "num_classes"},
                            num_classes=options.get("num_classes"), report=report,
                            guessed=arch_name is None)
    twins = [a.name for s, a, _, _ in ranking if s == share and a.name != arch.name]
    if arch_name is None and twins and share > 0:
        inspection.warnings.append(f"the weights fit {', '.join(twins)} as well as {arch.name}"
                                   "; pass --arch to choose another")
    if kind == "pickled-module":
        inspection.warnings.append("the file is a whole pickled model (opened because it is "
                                   "trusted); only its weights are used")
    return inspection


def _ranking(state: dict, maps: Sequence[tuple[str, str]], given: dict) -> list:
    """[(share, arch, options, report)] over every registered architecture, best first; ties
    go to the one that fits with its default options, then to the one whose names needed the
    fewest renames, then to a full one."""
    from medviewer.labs import architectures
    from medviewer.training import keymatch

    try:
        architectures.load_all()
    except ImportError:  # a lab's optional dependency missing: rank what is there
        pass
    ranked = []
    for arch in list(architectures.ARCHITECTURES.values()):
        try:
            share, options, report, plain = keymatch.fit(arch, state, maps, given)
        except Exception:  # noqa: BLE001 - an architecture that cannot take these options
            continue
        key = (share, plain, -len(report.renamed), arch.full)
        ranked.append((key, (share, arch, options, report)))
    ranked.sort(key=lambda item: item[0], reverse=True)
    return [entry for _, entry in ranked]


def _load(arch, inspection: Inspection, state: dict, maps: Sequence[tuple[str, str]],
          path: Path):
    """The architecture built for real with the options read from the weights, loaded
    strictly; ModelError with the key report when anything does not fit."""
    from medviewer.inference.errors import ModelError
    from medviewer.training import keymatch

    options = {**inspection.build}
    if inspection.num_classes is not None:
        options["num_classes"] = inspection.num_classes
    try:
        model = arch.build(**options)
    except Exception as exc:  # noqa: BLE001 - a builder given options it cannot take
        raise _unbuildable(arch.name, options, exc) from exc
    aligned, report = keymatch.load_aligned(model, state, maps)
    report.looks_like, report.fits = inspection.report.looks_like, inspection.report.fits
    inspection.report = report
    if not report.ok:
        raise ModelError(path, not_fitting(arch.name, report, inspection.guessed))
    try:
        model.load_state_dict(aligned, strict=True)
    except RuntimeError as exc:
        raise ModelError(path, f"These weights do not fit the architecture {arch.name} "
                         f"({str(exc)[:300]}).") from exc
    return model.eval()


def _unbuildable(arch: str, options: dict, exc: Exception):
    from medviewer.inference.errors import ModelError

    return ModelError(None, f"{arch} cannot be built with the options {options} "
                      f"({str(exc)[:200]}); fix --build.")


def not_fitting(arch: str, report: KeyReport, guessed: bool = False) -> str:
    how = " (the closest registered one to these weights)" if guessed else ""
    return (f"These weights do not fit the architecture {arch}{how}: {report.sentence()}. Pick "
            "the architecture the checkpoint was trained with (--arch), or map names with --map"
            " OLD_PREFIX=NEW_PREFIX.")


def _architecture(name: str):
    from medviewer.inference.errors import ModelError
    from medviewer.labs import architectures

    try:  # already registered (a plugin's or a test's) needs no import of every lab
        return architectures.ARCHITECTURES.get(name) or architectures.get(name)
    except KeyError as exc:
        raise ModelError(None, f"{exc.args[0]}; pick one with --arch.") from None
    except ImportError as exc:
        raise ModelError(None, f"The lab architectures cannot be imported ({exc}); reinstall "
                         "MedViewer.") from exc


# --------------------------------------------------------------------------- self-contained

def _foreign_kind(path: Path) -> str | None:
    """"onnx", "torchscript", "exported-program" or None (training/foreign.py decides)."""
    try:
        from medviewer.training import foreign
    except ImportError:
        if path.suffix.lower() in (".onnx", ".pt2") or _is_torchscript(path):
            from medviewer.inference.errors import ModelError

            raise ModelError(path, "This MedViewer cannot import self-contained model files "
                             "(ONNX, TorchScript, torch.export) yet; export a state dict "
                             "instead.") from None
        return None
    return foreign.kind_of(path)


def _self_contained(inspection: Inspection, lab: int | None) -> Inspection:
    """The graph's guess of lab and task, under the caller's lab."""
    from medviewer.inference.errors import ModelError

    if lab is not None:
        inspection.lab = lab
    if inspection.lab not in LAB_TASKS:
        raise ModelError(inspection.path, "Say which lab the model is for (--lab 1 to 5): its "
                         "plugin prepares the images and reads the answers.")
    inspection.task = LAB_TASKS[inspection.lab]
    return inspection


def _foreign():
    from medviewer.training import foreign

    return foreign


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


VARIANT_SUFFIXES = ("_small", "_light")


def similar_model(lab: int | None, task: str | None, arch: str | None = None,
                  models: Sequence[Manifest] | None = None) -> Manifest | None:
    """The installed model (of `models`, default every installed one) of this lab and task to
    borrow an input spec from: the same architecture (or its light variant) first, then one
    of a registered architecture (an imported file's spec is a user's guess), then by id;
    else one of the same task in another lab; None when none is."""
    if models is None:
        from medviewer.inference.registry import list_models

        models = list_models()[0]

    def base(name: str | None) -> str | None:
        for suffix in VARIANT_SUFFIXES:
            name = name.removesuffix(suffix) if name else name
        return name

    same = sorted((m for m in models if m.task == task),
                  key=lambda m: (m.lab != lab, m.arch != arch, base(m.arch) != base(arch),
                                 m.external, m.id))
    return same[0] if same else None


def parse_map(text: str) -> tuple[str, str]:
    """'OLD=NEW' (either may be empty: '=net' puts everything under net.) -> ('OLD', 'NEW')."""
    from medviewer.inference.errors import ModelError

    old, sep, new = text.partition("=")
    if not sep:
        raise ModelError(None, f"--map {text!r} is not OLD_PREFIX=NEW_PREFIX (e.g. "
                         "--map resnet=backbone).")
    return old.strip().strip("."), new.strip().strip(".")
