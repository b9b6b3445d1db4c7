"""A checkpoint's tensor names fitted to an architecture's, with a KeyReport.

`align`: the user's `--map`s first, then exact names, then prefix pairs found automatically
(torchvision's `backbone.body.*` under a wrapper's `detector.`, a course module's `resnet.*` as
`backbone.*`), then a leftover module whose parameters are unique on both sides (`fc` ->
`classifier`), and last the leftover modules in order when both lists are alike (a notebook's
`fc1`, `bn1`, ... for `features.0`, `features.1`, ...). Every rename and every tensor that did
not fit lands in the report.
`fit` scores an architecture built on the meta device (no memory, no time) with the build
options its `options_from_weights` reads from the aligned tensors.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from medviewer.labs.architectures import Architecture
from medviewer.training.importing import KeyReport

Shapes = dict[str, tuple[int, ...]]
BUFFERS_WITH_DEFAULTS = ("num_batches_tracked",)  # BatchNorm's counter: old checkpoints lack it


def shapes_of(state: dict[str, torch.Tensor]) -> Shapes:
    return {k: tuple(v.shape) for k, v in state.items()}


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
    of classes) are unique on both sides; then the rest in order when alike (_in_order)."""
    by_name: dict[str, str] = {}  # name after the user's maps -> name in the file
    clashes = []  # two names a map made one: the second is left over, never loaded
    for original in state:
        if by_name.setdefault(apply_maps(original, maps), original) != original:
            clashes.append(original)
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
    for cmod, mmod in _in_order(left_c, left_m, ckpt, model):
        for c in [c for c in left_c if _module(c) == cmod]:
            fed[_join(mmod, c.rsplit(".", 1)[-1])] = c
            left_m.discard(_join(mmod, c.rsplit(".", 1)[-1]))
        left_c -= {c for c in left_c if _module(c) == cmod}
        renamed.append((cmod, mmod))
    aligned = {m: state[by_name[c]] for m, c in fed.items()}
    filled = sorted(n for n in left_m if n.rsplit(".", 1)[-1] in BUFFERS_WITH_DEFAULTS)
    mismatched = sorted((m, ckpt[c], model[m]) for m, c in fed.items() if ckpt[c] != model[m])
    report = KeyReport(
        total=len(model), loaded=len(fed) - len(mismatched) + len(filled),
        missing=sorted(left_m - set(filled)),
        unexpected=sorted([*(by_name[c] for c in left_c), *clashes]),
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
    votes: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)  # pair -> {c: m}
    for c in left_c:
        parts = c.split(".")
        for k in range(len(parts), 1, -1):  # the longest common suffix only
            suffix = ".".join(parts[-k:])
            if suffix in suffixes:
                old = c[:len(c) - len(suffix)]
                for m in suffixes[suffix]:
                    votes[(old, m[:len(m) - len(suffix)])][c] = m
                break
    best = None
    for (old, new), hits in votes.items():
        same = sum(ckpt[c] == model[m] for c, m in hits.items())
        if len(hits) < 2 and same < 1:
            continue  # one tensor of another shape: a coincidence of names, not a prefix
        key = (len(hits), same, -len(old) - len(new))
        if best is None or key > best[0]:
            best = (key, old, new)
    if best is None:
        return None
    _, old, new = best
    hits = {c: new + c[len(old):] for c in left_c  # every name under the pair, not only votes
            if c.startswith(old) and new + c[len(old):] in left_m}
    return old, new, hits


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


def _in_order(left_c: set[str], left_m: set[str], ckpt: Shapes, model: Shapes
              ) -> list[tuple[str, str]]:
    """The leftover modules paired in the order both sides registered them, when the two
    lists are alike module for module (the same parameter names and ranks): a notebook's
    fc1, bn1, fc2... for the project's features.0, features.1, features.4... of other widths,
    whose shapes then come from options_from_weights. Nothing when they are not alike."""
    def modules(left: set[str], shapes: Shapes) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for n in shapes:  # the state dict's order is the modules' registration order
            if n in left:
                out.setdefault(_module(n), {})[n.rsplit(".", 1)[-1]] = len(shapes[n])
        return out

    c_mods, m_mods = modules(left_c, ckpt), modules(left_m, model)
    if not c_mods or len(c_mods) != len(m_mods) or any(
            a != b for a, b in zip(c_mods.values(), m_mods.values(), strict=True)):
        return []
    return list(zip(c_mods, m_mods, strict=True))


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


def fit(arch: Architecture, state: dict[str, torch.Tensor],
        maps: Sequence[tuple[str, str]] = (), given: dict | None = None
        ) -> tuple[float, dict, KeyReport, float]:
    """(share of tensors that fit, build options, report, share at the default options) of
    `state` on `arch` built on the meta device with the options its options_from_weights
    reads from the names aligned to its default build, under the caller's `given` ones.
    The share counts the model's tensors the checkpoint fed with the right shape against all
    the model needs plus the checkpoint's leftovers."""
    defaults = {**arch.default_options, **(given or {})}
    aligned, plain = align(state, model_shapes(arch, defaults), maps)
    options = defaults
    if arch.options_from_weights is not None:
        try:
            found = arch.options_from_weights(aligned) or {}
        except Exception:  # noqa: BLE001 - an architecture that does not fit says nothing
            found = {}
        options = {**arch.default_options, **found, **(given or {})}
    report = plain
    if options != defaults:
        _, report = align(state, model_shapes(arch, options), maps)
    return share(report), options, report, share(plain)


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
