"""Torch checkpoints as the user has them -> their tensors by name.

`read_state` opens safetensors and `torch.save` files (zip or legacy pickle) with
`torch.load(weights_only=True)`: no code in the file runs, so a state dict needs no trust; a
whole pickled module (or anything else that needs a class to be imported) is refused unless the
user trusts the file. The usual wrappers (`state_dict`, `model`, EMA copies, Lightning) and
prefixes (`module.` of DataParallel/DDP, `_orig_mod.` of torch.compile) are taken off.

medviewer.training.keymatch then fits the names to an architecture's.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from medviewer.inference.errors import ModelError

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
