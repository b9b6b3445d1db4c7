"""Torch checkpoints as the user has them -> tensors named as a registered architecture's.

`read_state` opens safetensors and `torch.save` files (zip or legacy pickle) with
`torch.load(weights_only=True)`: no code in the file runs, so a state dict needs no trust; a
whole pickled module (or anything else that needs a class to be imported) is refused unless the
user trusts the file. The usual wrappers (`state_dict`, `model`, EMA copies, Lightning) and
prefixes (`module.` of DataParallel/DDP, `_orig_mod.` of torch.compile) are taken off.

`align` then fits the checkpoint's names to a model's: exact names, the user's `--map`s, prefix
pairs found automatically (torchvision's `backbone.body.*` under the project's `detector.`),
and last, a leftover module whose parameters are unique on both sides (`fc` -> `classifier`).
Every rename and every tensor that did not fit lands in a KeyReport.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from medviewer.inference.errors import ModelError
from medviewer.labs.architectures import Architecture
from medviewer.training.importing import KeyReport

Shapes = dict[str, tuple[int, ...]]
# the keys a training script wraps its weights in, most specific first
WRAPPERS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema", "ema",
            "net", "network", "module", "weights", "params")
RUN_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile
LIGHTNING_MARKS = ("pytorch-lightning_version", "global_step", "hyper_parameters", "epoch")
LIGHTNING_PREFIXES = ("model.", "net.")
# modules whose globals in a pickle mean "code to run": refused, never stood in for
RUNNERS = frozenset({"os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys",
                     "shutil", "socket", "runpy", "importlib", "pty", "ctypes", "code",
                     "webbrowser", "pickle", "marshal", "types", "operator", "functools"})
BUFFERS_WITH_DEFAULTS = ("num_batches_tracked",)  # BatchNorm's counter: old checkpoints lack it


# --------------------------------------------------------------------------- reading files

def read_state(path: str | Path, *, trust_pickle: bool = False
               ) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors by name, kind): kind "safetensors", "state-dict" or "pickled-module"."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as exc:
        raise ModelError(path, f"The checkpoint cannot be read ({exc.strerror}).") from exc
    if len(head) == 9 and head[8:9] == b"{":
        state, kind = _read_safetensors(path), "safetensors"
    elif head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        state, kind = _read_pickle(path, trust_pickle)
    else:
        raise ModelError(path, "This is neither a safetensors file nor a torch.save checkpoint "
                         "(nor ONNX or TorchScript); export the model's state_dict with "
                         "torch.save or safetensors.")
    if not state:
        raise ModelError(path, "The checkpoint holds no tensors; save the model's state_dict "
                         "(torch.save(model.state_dict(), path)).")
    return state, kind


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return strip_run_prefixes(load_file(str(path)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(path, f"This is not a readable safetensors file ({str(exc)[:300]}); "
                         "it is damaged or of another format.") from exc


def _read_pickle(path: Path, trust_pickle: bool) -> tuple[dict[str, torch.Tensor], str]:
    """weights_only=True, with every class or function the pickle names (argparse.Namespace
    of a timm checkpoint's args, a config object) replaced by an inert stand-in: nothing from
    the file runs and nothing it names is imported. A pickle that names a code runner
    (os.system, ...) or needs a whole module is refused unless trusted."""
    if _is_torchscript(path):
        raise ModelError(path, "This is a TorchScript archive, not a state dict; import it as "
                         "a self-contained model (no --arch needed).")
    try:
        obj, stood_in = _load_inert(path)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise ModelError(path, _refusal(str(exc))) from None
        return _from_trusted(path, _load_trusted(path))
    except (RuntimeError, OSError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ModelError(path, f"This torch.save file cannot be read ({str(exc)[:200]}); it is "
                         "damaged or not a checkpoint.") from exc
    state = unwrap(obj)
    if state is not None:
        return state, "state-dict"
    module = next((s.name for s in _stand_ins(obj) if "_parameters" in s.state), None)
    if module is None:
        raise ModelError(path, f"No weights found in this checkpoint (it holds "
                         f"{_describe(obj)}); save the model's state_dict with torch.save.")
    if not trust_pickle:
        raise ModelError(path, _refusal(f"GLOBAL {module}", module=True))
    return _from_trusted(path, _load_trusted(path))


def _from_trusted(path: Path, obj) -> tuple[dict[str, torch.Tensor], str]:
    state = unwrap(obj)
    if state is None:
        raise ModelError(path, f"No weights found in this checkpoint (it holds "
                         f"{_describe(obj)}); save the model's state_dict with torch.save.")
    pickled_module = isinstance(obj, nn.Module) or (
        isinstance(obj, dict) and any(isinstance(v, nn.Module) for v in obj.values()))
    return state, "pickled-module" if pickled_module else "state-dict"


class StandIn(dict):
    """What a pickle names stands here instead: it keeps what the pickle gives it (arguments,
    state, items) and runs nothing. A dict, so a dict subclass's items have a place."""

    name = "?"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.args, self.state = args, {}

    def __setstate__(self, state) -> None:
        self.state = state if isinstance(state, dict) else {"state": state}

    def append(self, value) -> None:
        self.setdefault("items", []).append(value)

    def extend(self, values) -> None:
        self.setdefault("items", []).extend(values)


MAX_STAND_INS = 64


def _load_inert(path: Path) -> tuple[object, dict[str, type]]:
    """torch.load(weights_only=True), each refused global stood in for; UnpicklingError when
    one is a code runner torch blocks or RUNNERS names."""
    stand_ins: dict[str, type] = {}
    while True:
        try:
            with torch.serialization.safe_globals([(c, n) for n, c in stand_ins.items()]):
                # a zip maps its tensors from the file instead of reading them all into memory
                return torch.load(path, map_location="cpu", weights_only=True,
                                  mmap=_is_zip(path)), stand_ins
        except pickle.UnpicklingError as exc:
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            name = found.group(1) if found else None
            if (name is None or name in stand_ins or "blocked" in str(exc)
                    or name.split(".")[0] in RUNNERS or len(stand_ins) >= MAX_STAND_INS):
                raise
            stand_ins[name] = type("StandIn", (StandIn,), {"name": name})


def _stand_ins(obj, depth: int = 0):
    """Every StandIn in a loaded checkpoint (dicts, lists, tuples, stand-ins' state)."""
    if depth > 32:
        return
    if isinstance(obj, StandIn):
        yield obj
        children = [*obj.values(), *obj.state.values(), *obj.args]
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    else:
        return
    for child in children:
        yield from _stand_ins(child, depth + 1)


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _refusal(message: str, *, module: bool = False) -> str:
    """A refusal as a sentence: a whole pickled network, or code the file wants run."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    name = found.group(1) if found else "an object it cannot name"
    if module:
        return (f"This checkpoint holds a whole pickled model ({name}), not only its weights, "
                "and rebuilding it runs code. Save model.state_dict() instead, or pass "
                "--trust-pickle if you trust where the file came from.")
    return (f"This checkpoint needs {name} to open: unpickling it would run code hidden in the "
            "file, so it was not opened. Save the model's state_dict instead, or pass "
            "--trust-pickle only if you trust where the file came from.")


def _load_trusted(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise ModelError(path, f"The pickled model needs a class MedViewer does not have "
                         f"({exc}); it was defined in the script that saved it. Save "
                         "model.state_dict() there and import that.") from exc
    except Exception as exc:  # noqa: BLE001 - a trusted pickle can raise anything
        raise ModelError(path, f"The pickled checkpoint cannot be opened ({str(exc)[:200]}).") \
            from exc


def unwrap(obj) -> dict[str, torch.Tensor] | None:
    """The tensors of a checkpoint object: a module's state dict, a state dict, or the first
    wrapper key holding one; non-tensor values (optimizer state, epoch, ...) are ignored."""
    if isinstance(obj, nn.Module):
        return strip_run_prefixes(obj.state_dict())
    if not isinstance(obj, dict) or isinstance(obj, StandIn):
        return None
    for key in WRAPPERS:
        inner = unwrap(obj[key]) if isinstance(obj.get(key), (dict, nn.Module)) else None
        if inner:
            if key == "state_dict" and any(m in obj for m in LIGHTNING_MARKS):
                inner = _strip_common(inner, LIGHTNING_PREFIXES)
            return inner
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return strip_run_prefixes(tensors) if tensors else None


def strip_run_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `module.` and `_orig_mod.` wrappers put in front of names taken off."""
    out = {}
    for name, tensor in state.items():
        name = name.replace("._orig_mod.", ".")  # a compiled submodule
        while name.startswith(RUN_PREFIXES):
            name = name.split(".", 1)[1]
        out[name] = tensor
    return out


def _strip_common(state: dict[str, torch.Tensor], prefixes: Sequence[str]):
    for prefix in prefixes:
        if all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = ", ".join(map(str, list(obj)[:8]))
        return f"a dict of {keys}" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


# --------------------------------------------------------------------------- aligning names

def shapes_of(state: dict[str, torch.Tensor]) -> Shapes:
    return {k: tuple(v.shape) for k, v in state.items()}


def parse_map(text: str) -> tuple[str, str]:
    """'OLD=NEW' (either may be empty: '=net' puts everything under net.) -> ('OLD', 'NEW')."""
    old, sep, new = text.partition("=")
    if not sep:
        raise ModelError(None, f"--map {text!r} is not OLD_PREFIX=NEW_PREFIX (e.g. "
                         "--map resnet=backbone).")
    return old.strip().strip("."), new.strip().strip(".")


def _with_dot(prefix: str) -> str:
    return f"{prefix}." if prefix else ""


def apply_maps(name: str, maps: Sequence[tuple[str, str]]) -> str:
    for old, new in maps:
        old_d = _with_dot(old)
        if name.startswith(old_d):
            return _with_dot(new) + name[len(old_d):]
    return name


def align(state: dict[str, torch.Tensor], model: Shapes,
          maps: Sequence[tuple[str, str]] = ()) -> tuple[dict[str, torch.Tensor], KeyReport]:
    """The checkpoint's tensors under the model's names (whatever their shapes) + the report.

    Order: the user's maps; exact names; automatic prefix pairs (the pair that maps the most
    tensors by a common dotted suffix of two or more parts, again and again); then leftover
    modules whose parameters (names and shapes; or shapes but the first axis, e.g. the number
    of classes) are unique on both sides."""
    by_name: dict[str, str] = {}  # name after the user's maps -> name in the file
    for original in state:
        by_name.setdefault(apply_maps(original, maps), original)
    ckpt = {name: tuple(state[orig].shape) for name, orig in by_name.items()}
    fed = {n: n for n in model if n in ckpt}  # model name -> checkpoint name
    renamed: list[tuple[str, str]] = []
    left_c, left_m = set(ckpt) - set(fed.values()), set(model) - set(fed)
    while (pair := _best_prefix_pair(left_c, left_m, ckpt, model)) is not None:
        old, new, hits = pair
        for c, m in hits.items():
            fed[m] = c
        left_c -= set(hits)
        left_m -= set(hits.values())
        renamed.append((old.rstrip("."), new.rstrip(".")))
    for strict in (True, False):
        for cmod, mmod in _unique_modules(left_c, left_m, ckpt, model, strict):
            for c in [c for c in left_c if _module(c) == cmod]:
                m = _join(mmod, c.rsplit(".", 1)[-1])
                fed[m] = c
                left_c.discard(c)
                left_m.discard(m)
            renamed.append((cmod, mmod))
    aligned = {m: state[by_name[c]] for m, c in fed.items()}
    filled = sorted(n for n in left_m if n.rsplit(".", 1)[-1] in BUFFERS_WITH_DEFAULTS)
    mismatched = sorted((m, ckpt[c], model[m]) for m, c in fed.items() if ckpt[c] != model[m])
    report = KeyReport(
        total=len(model), loaded=len(fed) - len(mismatched) + len(filled),
        missing=sorted(left_m - set(filled)), unexpected=sorted(by_name[c] for c in left_c),
        mismatched=mismatched, renamed=renamed, filled=filled)
    return aligned, report


def _module(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _join(module: str, leaf: str) -> str:
    return f"{module}.{leaf}" if module else leaf


def _best_prefix_pair(left_c: set[str], left_m: set[str], ckpt: Shapes, model: Shapes
                      ) -> tuple[str, str, dict[str, str]] | None:
    """(old prefix, new prefix, {checkpoint name: model name}) mapping the most leftovers."""
    if not left_c or not left_m:
        return None
    suffixes: dict[str, list[str]] = defaultdict(list)
    for m in left_m:
        parts = m.split(".")
        for k in range(2, len(parts) + 1):
            suffixes[".".join(parts[-k:])].append(m)
    votes: Counter[tuple[str, str]] = Counter()
    for c in left_c:
        parts = c.split(".")
        for k in range(len(parts), 1, -1):  # the longest common suffix only
            suffix = ".".join(parts[-k:])
            if suffix in suffixes:
                old = c[:len(c) - len(suffix)]
                votes.update({(old, m[:len(m) - len(suffix)]) for m in suffixes[suffix]})
                break
    best = None
    for (old, new), _ in votes.most_common(64):
        hits = {c: new + c[len(old):] for c in left_c
                if c.startswith(old) and new + c[len(old):] in left_m}
        same = sum(ckpt[c] == model[m] for c, m in hits.items())
        if len(hits) < 2 and same < 1:
            continue  # one tensor of another shape: a coincidence of names, not a prefix
        key = (len(hits), same, -len(old) - len(new))
        if best is None or key > best[0]:
            best = (key, old, new, hits)
    return None if best is None else best[1:]


def _unique_modules(left_c: set[str], left_m: set[str], ckpt: Shapes, model: Shapes,
                    strict: bool) -> list[tuple[str, str]]:
    """Leftover modules whose parameter signatures occur once on each side, paired."""
    def signatures(names: Iterable[str], shapes: Shapes) -> dict:
        groups: dict[str, list] = defaultdict(list)
        for n in names:
            shape = shapes[n] if strict else (len(shapes[n]), shapes[n][1:])
            groups[_module(n)].append((n.rsplit(".", 1)[-1], shape))
        by_sig: dict = defaultdict(list)
        for module, params in groups.items():
            by_sig[frozenset(params)].append(module)
        return by_sig

    c_sigs, m_sigs = signatures(left_c, ckpt), signatures(left_m, model)
    return [(c_mods[0], m_sigs[sig][0]) for sig, c_mods in c_sigs.items()
            if len(c_mods) == 1 and len(m_sigs.get(sig, ())) == 1]


# --------------------------------------------------------------------------- architectures

_SHAPES: dict[tuple[str, str], Shapes] = {}


def model_shapes(arch: Architecture, options: dict) -> Shapes:
    """The state dict's names and shapes of `arch` built with `options`, on the meta device
    (no memory, no time); cached. ValueError/TypeError/RuntimeError when it cannot be built."""
    key = (arch.name, json.dumps(options, sort_keys=True, default=str))
    if key not in _SHAPES:
        with torch.device("meta"):
            module = arch.build(**options)
        _SHAPES[key] = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    return _SHAPES[key]


def options_for(arch: Architecture, state: dict[str, torch.Tensor],
                maps: Sequence[tuple[str, str]] = (), given: dict | None = None) -> dict:
    """Build options read from the weights (arch.options_from_weights on the names aligned to
    the architecture built with its defaults), under the caller's `given` ones."""
    options = {**arch.default_options, **(given or {})}
    if arch.options_from_weights is None:
        return options
    try:
        aligned, _ = align(state, model_shapes(arch, options), maps)
        found = arch.options_from_weights(aligned) or {}
    except Exception:  # noqa: BLE001 - an architecture that does not fit says nothing
        return options
    return {**arch.default_options, **found, **(given or {})}


def fit(arch: Architecture, state: dict[str, torch.Tensor],
        maps: Sequence[tuple[str, str]] = (), given: dict | None = None
        ) -> tuple[float, dict, KeyReport]:
    """(share of tensors that fit, build options, report) of `state` on `arch` (meta builds).
    The share counts the model's tensors the checkpoint fed with the right shape against all
    the model needs plus the checkpoint's leftovers."""
    options = options_for(arch, state, maps, given)
    _, report = align(state, model_shapes(arch, options), maps)
    return share(report), options, report


def share(report: KeyReport) -> float:
    fed = report.loaded - len(report.filled)
    needed = report.total - len(report.filled) + len(report.unexpected)
    return fed / needed if needed else 0.0


def load_aligned(model: nn.Module, state: dict[str, torch.Tensor],
                 maps: Sequence[tuple[str, str]] = ()) -> tuple[dict[str, torch.Tensor], KeyReport]:
    """Aligned tensors for `model` (filled buffers included) and the report; the caller loads
    them when the report is ok."""
    own = model.state_dict()
    aligned, report = align(state, shapes_of(own), maps)
    for name in report.filled:
        aligned[name] = own[name]
    return aligned, report
