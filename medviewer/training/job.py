"""The job file of `medviewer train JOB.json`: what to train, on what, for how long.

Validation is strict: an unknown key is far more often a typo ("epoch", "learning_rate")
than a wish, and silently training with a default would waste the user's afternoon. Every
problem becomes a TrainingError naming the job file and the key, in a sentence.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medviewer.training.errors import TrainingError

INITS = ("current", "scratch")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "onecycle", "none")
DEVICES = ("auto", "cpu", "cuda")
SEED_LIMIT = 2**32  # numpy's and torch's generators take any seed below it
COUNT_LIMIT = 100_001  # epochs, demo cases, patience: far above any real job


class _Mapping:
    """Item access too (job.data["demo"]), so dict-minded callers work unchanged."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@dataclass(frozen=True)
class SeriesRef(_Mapping):
    """One series of a folder (its SeriesInstanceUID): when a folder holds several annotated
    series and only some are chosen."""

    folder: str
    uid: str


@dataclass(frozen=True)
class DataSpec(_Mapping):
    # series folders whose workspace annotations are the truth (every annotated series in
    # the folder), or SeriesRef entries (that series only)
    series: tuple[str | SeriesRef, ...] = ()
    demo: int = 0  # generated phantom cases to add
    max_cases: int | None = None
    val_fraction: float = 0.25
    split_seed: int = 0
    # segment name -> model label name, or None: excluded (ignored, not background); segments
    # not named here match a label by name or code (training.labels)
    segment_labels: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class EarlyStopping(_Mapping):
    patience: int = 3  # epochs without improvement of the main metric
    min_delta: float = 0.0


@dataclass(frozen=True)
class Job(_Mapping):
    model: str  # model id (its active version is the baseline) or a model folder
    data: DataSpec
    init: str = "current"
    epochs: int = 3
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: str | None = None  # None: the recipe's (SGD for detection, else Adam)
    schedule: str = "cosine"
    early_stopping: EarlyStopping | None = field(default_factory=EarlyStopping)
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    out: str | None = None
    backbone_weights: str | None = None  # a local pretrained-backbone file, for "scratch"
    path: str | None = None  # the job file it came from (not a key of the file)

    @classmethod
    def from_dict(cls, d: Any, path: str | Path | None = None) -> Job:
        return _parse(d, path)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d["data"]["series"] = [s if isinstance(s, str) else asdict(s) for s in self.data.series]
        return d


def load_job(path: str | Path) -> Job:
    """Read and validate a job file; relative series / out paths are relative to it."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(path, "The job file does not exist; check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(path, f"The job file cannot be read ({exc}).") from None
    except json.JSONDecodeError as exc:
        raise TrainingError(path, f"The job file is not valid JSON (line {exc.lineno}, "
                            f"column {exc.colno}: {exc.msg}).") from None
    except (ValueError, RecursionError) as exc:  # 5000-digit numbers, [[[[...]]]] 1000 deep
        reason = "it nests too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise TrainingError(path, f"The job file cannot be read ({reason}).") from None
    try:
        return _parse(d, path, base=path.parent)
    except RecursionError:  # parsed, but too deep to describe in a message
        raise TrainingError(path, "The job file nests too deep to be a job.") from None


# --- validation ----------------------------------------------------------------------------

_TOP = {"model", "init", "data", "epochs", "batch_size", "lr", "optimizer", "schedule",
        "early_stopping", "augment", "seed", "device", "max_steps_per_epoch", "out",
        "backbone_weights"}
_DATA = {"series", "demo", "max_cases", "val_fraction", "split_seed", "segment_labels"}
_STOP = {"patience", "min_delta"}


class _Checker:
    """Typed reads of one JSON object, each failure a TrainingError about its key."""

    def __init__(self, d: Any, path: str | Path | None, where: str, known: set[str]) -> None:
        self.path, self.where = path, where
        if not isinstance(d, dict):
            self.fail(f"{where or 'The job'} must be a JSON object {{...}}, not "
                      f"{type(d).__name__}.")
        unknown = sorted(set(d) - known)
        if unknown:
            self.fail(f"Unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
                      f"{' in ' + where if where else ''}; the known keys are "
                      f"{', '.join(sorted(known))}.")
        self.d = d

    def fail(self, sentence: str) -> None:
        raise TrainingError(self.path, sentence)

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kinds: tuple[type, ...], default: Any, *, none: bool = False,
            what: str = "") -> Any:
        if key not in self.d:
            return default
        value = self.d[key]
        if value is None and none:
            return None
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if wrong_bool or not isinstance(value, kinds):
            self.fail(f"{self.name(key)!r} must be {what}, not {_brief(value)}.")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str | None,
               none: bool = False) -> str | None:
        value = self.get(key, (str,), default, none=none, what=" or ".join(
            f'"{c}"' for c in choices))
        if value is not None and value not in choices:
            self.fail(f"{self.name(key)!r} is {_brief(value)}; use one of "
                      f"{', '.join(choices)}.")
        return value

    def number(self, key: str, default: Any, *, integer: bool, low: float,
               high: float | None = None, none: bool = False, strict_low: bool = False) -> Any:
        kinds = (int,) if integer else (int, float)
        what = ("a whole number" if integer else "a number") + (" or null" if none else "")
        value = self.get(key, kinds, default, none=none, what=what)
        if value is None:
            return None
        if isinstance(value, float) and not math.isfinite(value):  # NaN compares False
            self.fail(f"{self.name(key)!r} is {value}; it must be a finite number.")
        too_low = value <= low if strict_low else value < low
        if too_low or (high is not None and value >= high):
            bound = f"above {low:g}" if strict_low else f"at least {low:g}"
            self.fail(f"{self.name(key)!r} is {value}; it must be {bound}"
                      + (f" and below {_show(high)}." if high is not None else "."))
        return value if integer else float(value)


def _brief(value: Any) -> str:
    """A value as JSON for a message, cut short: a job may hold megabytes in one key."""
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _show(bound: float) -> str:
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


def _parse(d: Any, path: str | Path | None, base: Path | None = None) -> Job:
    c = _Checker(d, path, "", _TOP)
    model = c.get("model", (str,), None, what="a model id or a model folder")
    if not model or not model.strip():
        c.fail('The job names no model: add "model": "<model id or folder>" '
               "(see `medviewer models`).")
    if "data" not in d:
        c.fail('The job has no "data": list annotated series in "data.series" or ask for '
               'demo cases with "data.demo".')
    stop = d.get("early_stopping", {})
    return Job(
        model=_resolve(model, base) if base and Path(base, model).is_dir() else model,
        data=_parse_data(d["data"], path, base), init=c.choice("init", INITS, "current"),
        epochs=c.number("epochs", 3, integer=True, low=1, high=COUNT_LIMIT),
        batch_size=c.number("batch_size", 8, integer=True, low=1, high=COUNT_LIMIT),
        # fine-tuning a few corrected cases wants a tenth of a fresh start's rate
        lr=c.number("lr", 1e-3 if d.get("init") == "scratch" else 1e-4, integer=False,
                    low=0.0, strict_low=True),
        optimizer=c.choice("optimizer", OPTIMIZERS, None, none=True),
        schedule=c.choice("schedule", SCHEDULES, "cosine"),
        early_stopping=None if stop is None else _parse_stop(stop, path),
        augment=c.get("augment", (bool,), True, what="true or false"),
        seed=c.number("seed", 0, integer=True, low=0, high=SEED_LIMIT),
        device=c.choice("device", DEVICES, "auto"),
        max_steps_per_epoch=c.number("max_steps_per_epoch", None, integer=True, low=1,
                                     high=10**9, none=True),
        out=_resolve(c.get("out", (str,), None, none=True, what="a folder or null"), base),
        backbone_weights=_backbone(c, base),
        path=str(path) if path is not None else None)


def _backbone(c: _Checker, base: Path | None) -> str | None:
    """A pretrained backbone file on this machine (nothing is downloaded), for "scratch"."""
    value = _resolve(c.get("backbone_weights", (str,), None, none=True,
                           what="a weights file or null"), base)
    if value is None:
        return None
    if c.d.get("init") != "scratch":
        c.fail("'backbone_weights' starts a fresh model from a pretrained backbone: set "
               "\"init\": \"scratch\" with it (fine-tuning starts from the current version).")
    if not Path(value).is_file():
        c.fail(f"The backbone weights file {value} does not exist; give a local file "
               "(MedViewer never downloads weights).")
    return value


def _parse_data(d: Any, path: str | Path | None, base: Path | None) -> DataSpec:
    c = _Checker(d, path, "data", _DATA)
    series = [_series_entry(c, s, base)
              for s in c.get("series", (list,), [], what="a list of series folders")]
    folders = [s if isinstance(s, str) else s.folder for s in series]
    missing = [s for s in folders if not Path(s).exists()]
    if missing:
        c.fail(f"These series folders do not exist: {', '.join(missing[:3])}"
               f"{' ...' if len(missing) > 3 else ''}; fix 'data.series'.")
    spec = DataSpec(
        series=tuple(series), demo=c.number("demo", 0, integer=True, low=0, high=COUNT_LIMIT),
        max_cases=c.number("max_cases", None, integer=True, low=1, high=10**9, none=True),
        val_fraction=c.number("val_fraction", 0.25, integer=False, low=0.0, high=1.0,
                              strict_low=True),
        split_seed=c.number("split_seed", 0, integer=True, low=0, high=SEED_LIMIT),
        segment_labels=_segment_labels(c))
    if not spec.series and spec.demo == 0:
        c.fail("The job has no data: list annotated series in 'data.series' or set "
               "'data.demo' to a number of demo cases.")
    return spec


def _segment_labels(c: _Checker) -> dict[str, str | None]:
    """{"segment 1": "nodule", "marker": null}: a model label name, or null to exclude."""
    value = c.get("segment_labels", (dict,), {}, what='an object like {"segment 1": '
                  '"nodule", "marker": null}')
    bad = [k for k, v in value.items() if not (v is None or (isinstance(v, str) and v.strip()))]
    if bad:
        c.fail(f"'data.segment_labels' maps {bad[0]!r} to {_brief(value[bad[0]])}; give a "
               "model label name, or null to leave the segment out of training.")
    return dict(value)


def _series_entry(c: _Checker, entry: Any, base: Path | None) -> str | SeriesRef:
    """A folder as text, or {"folder": ..., "uid": SeriesInstanceUID} for one series of it."""
    if isinstance(entry, str) and entry:
        return _resolve(entry, base)
    if isinstance(entry, dict) and set(entry) == {"folder", "uid"} and \
            all(isinstance(v, str) and v for v in entry.values()):
        return SeriesRef(_resolve(entry["folder"], base), entry["uid"])
    c.fail("'data.series' lists series folders as text, or one series of a folder as "
           f'{{"folder": ..., "uid": "<SeriesInstanceUID>"}}; not {_brief(entry)}.')
    raise AssertionError  # fail() raised


def _parse_stop(d: Any, path: str | Path | None) -> EarlyStopping:
    c = _Checker(d, path, "early_stopping", _STOP)
    return EarlyStopping(patience=c.number("patience", 3, integer=True, low=1, high=COUNT_LIMIT),
                         min_delta=c.number("min_delta", 0.0, integer=False, low=0.0))


def _resolve(value: str | None, base: Path | None) -> str | None:
    if value is None or base is None:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())
