"""Static int8 quantization of a model folder, calibrated on demo phantoms, accuracy recorded.

    python -m medviewer.inference.quantize MODEL [--slices 24] [--min-agreement 0.98]
                                                 [--keep-fp32]

Writes `model.int8.onnx` (ONNX Runtime's quantize_static: QDQ, int8 weights per channel, uint8
activations calibrated by min/max) beside model.onnx, then compares it with the fp32 model
on held-out inputs (another phantom, never seen in calibration): segmentation Dice of the
argmax masks per foreground label, classification top-1 agreement, and the largest absolute
difference of the outputs. The manifest's `options.runtime` records the file's sha256, that
accuracy, and makes int8 the model's default only when the agreement reaches
--min-agreement, unless --keep-fp32 keeps fp32 the default (the user can still choose:
AI ▸ CPU Runtime, MEDVIEWER_BACKEND=fp32 / int8). Detection models
are refused: int8 moves Faster R-CNN's boxes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from medviewer.inference.backends import INT8_FILE
from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import (
    ONNX_FILE,
    Manifest,
    load_manifest,
    manifest_from_dict,
    sha256,
    write_manifest,
)

Feed = dict[str, np.ndarray]
TASKS = ("classification", "fusion", "segmentation")


def quantize_file(source: Path, target: Path, calibration: Sequence[Feed]) -> Path:
    """`target`: the int8 QDQ version of `source`, activation ranges from `calibration`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(calibration)

        def get_next(self) -> Feed | None:
            return next(self._feeds, None)

    # the quantizer logs a root-logger warning for every 1-D weight it leaves per-tensor
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            # ORT's symbolic shape pass fails on these graphs; onnx's shape inference suffices
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    return target


def _run(path: Path, feeds: Sequence[Feed]) -> list[list[np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [session.run(None, feed) for feed in feeds]


def accuracy(task: str, fp32: list[list[np.ndarray]], int8: list[list[np.ndarray]]
             ) -> dict[str, float]:
    """int8 against fp32 on the same inputs: 'agreement' (Dice of the argmax masks, worst
    foreground label, for segmentation; top-1 agreement for classification) and
    'max_abs_diff' of the first output."""
    a = np.concatenate([out[0] for out in fp32]).astype(np.float64)
    b = np.concatenate([out[0] for out in int8]).astype(np.float64)
    result = {"max_abs_diff": float(np.abs(a - b).max()),
              "max_relative_diff": float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-6))}
    if task == "segmentation":
        ma, mb = a.argmax(1), b.argmax(1)
        dice = [dice_score(ma == k, mb == k) for k in range(1, a.shape[1])]
        result["dice_per_label"] = [round(d, 5) for d in dice]
        result["agreement"] = min(dice) if dice else 1.0
    else:
        result["agreement"] = float((a.argmax(-1) == b.argmax(-1)).mean())
    return result


def dice_score(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def quantize_model(manifest: Manifest, calibration: Sequence[Feed], held_out: Sequence[Feed],
                   min_agreement: float = 0.98, note: str = "",
                   keep_fp32: bool = False) -> Manifest:
    """Write the folder's int8 file and record it, with its accuracy, in the manifest; int8
    becomes the default when it agrees enough with fp32, unless `keep_fp32`."""
    if manifest.task not in TASKS:
        raise ModelError(manifest.folder, f"{manifest.task} models are not quantized: int8 "
                         "moves detection boxes. Run this model in fp32.")
    if not calibration or not held_out:
        raise ModelError(manifest.folder, "Quantization needs calibration and held-out inputs.")
    target = quantize_file(manifest.path(ONNX_FILE), manifest.path(INT8_FILE), calibration)
    measured = accuracy(manifest.task, _run(manifest.path(ONNX_FILE), held_out),
                        _run(target, held_out))
    chosen = "int8" if measured["agreement"] >= min_agreement and not keep_fp32 else "fp32"
    d = manifest.to_dict()
    runtime = dict(d["options"].get("runtime", {}))
    runtime.update(backend=runtime.get("backend", "onnxruntime"), precision=chosen, int8={
        "file": INT8_FILE, "sha256": sha256(target),
        "accuracy": {**measured, "held_out_inputs": sum(len(next(iter(f.values())))
                                                       for f in held_out),
                     "versus": "fp32 model.onnx", "min_agreement": min_agreement,
                     "calibration": note or f"{len(calibration)} batches"}})
    d["options"] = {**d["options"], "runtime": runtime}
    write_manifest(manifest_from_dict(d, manifest.folder), manifest.folder)
    return load_manifest(manifest.folder)


# --- demo data: phantoms through the model's own pipeline -----------------------------------

def demo_volume(manifest: Manifest, slices: int, seed: int) -> SimpleNamespace:
    """A CT chest or chest X-ray phantom the model's pipeline reads (seed: which phantom)."""
    from medviewer.core import synthetic

    modalities = manifest.input.modalities or ["CT"]
    header = {"PatientAge": "061Y", "PatientSex": "F" if seed % 2 else "M"}
    if "CT" in modalities:
        voxels, _ = synthetic.ct_chest_phantom((slices, 256, 256), (2.5, 1.4, 1.4), seed=seed)
        modality = "CT"
    elif {"DX", "CR"} & set(modalities):
        image, _ = synthetic.chest_xray_phantom(512, seed=seed)
        voxels, modality = image[None], sorted({"DX", "CR"} & set(modalities))[0]
    else:
        raise ModelError(manifest.folder, f"No demo phantom reads {'/'.join(modalities)}; "
                         "quantize this model with calibration inputs of its own.")
    sources = [SimpleNamespace(sop_instance_uid=f"2.25.{k}", path="")
               for k in range(voxels.shape[0])]
    return SimpleNamespace(voxels=voxels, modality=modality, header=header, sources=sources,
                           series=None, is_colour=False)


def demo_feeds(pipeline: Any, volume: Any, batch: int = 4) -> list[Feed]:
    """The pipeline's preprocessed inputs for every slice of `volume`, `batch` at a time."""
    voxels = pipeline.grey_voxels(volume)
    indices = pipeline.indices(voxels, None)
    return [pipeline.preprocess(voxels, indices[i:i + batch], volume)
            for i in range(0, len(indices), batch)]


def main(argv: Sequence[str] | None = None) -> int:
    from medviewer.inference.registry import open_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model id or folder")
    parser.add_argument("--slices", type=int, default=24, help="phantom slices per set")
    parser.add_argument("--min-agreement", type=float, default=0.98)
    parser.add_argument("--keep-fp32", action="store_true",
                        help="offer int8 on request only; fp32 stays the default")
    args = parser.parse_args(argv)
    try:
        loaded = open_model(args.model, providers=["CPUExecutionProvider"])
        m, pipe = loaded.manifest, loaded.pipeline
        calibration = demo_feeds(pipe, demo_volume(m, args.slices, seed=0))
        held_out = demo_feeds(pipe, demo_volume(m, args.slices, seed=1))
        done = quantize_model(m, calibration, held_out, args.min_agreement,
                              f"{args.slices} slices of demo phantom seed 0; held out: seed 1",
                              args.keep_fp32)
    except ModelError as exc:
        print(f"medviewer quantize: {exc}", file=sys.stderr)
        return 2
    runtime = done.options["runtime"]
    print(f"{done.id}: wrote {INT8_FILE}; int8 against fp32 on held-out phantoms: "
          f"{runtime['int8']['accuracy']}; default precision now {runtime['precision']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
