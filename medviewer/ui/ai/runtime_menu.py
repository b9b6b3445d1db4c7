"""AI ▸ CPU Runtime: which runtime and precision run the models (inference.backends).

"Each Model's Default" runs what the model's manifest chose (ONNX Runtime fp32 unless
`python -m medviewer.inference.quantize` made its int8 file the default; MEDVIEWER_BACKEND
still applies). The other entries ask every model for one runtime and precision; a model
without an int8 file, or a machine without OpenVINO, runs ONNX Runtime fp32 and the status
bar says why. The choice is remembered; the menu only emits it (`AiController` acts).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QActionGroup
from PySide6.QtWidgets import QMenu, QWidget

from medviewer.inference.backends import openvino_installed

CHOICES = (  # (backend text, menu text, tooltip)
    ("", "Each Model's &Default", "What each model's manifest chose (fp32 unless its int8 "
     "file was made the default)"),
    ("onnxruntime,fp32", "ONNX Runtime &fp32", "Reproduces the trained model (1e-4)"),
    ("onnxruntime,int8", "ONNX Runtime &int8", "Faster on the CPU where the model has an "
     "int8 file; its accuracy against fp32 is in `medviewer models`"),
    ("openvino,fp32", "&OpenVINO fp32", "Intel's runtime on the same ONNX file, fp32"),
    ("openvino,int8", "OpenVINO i&nt8", "Intel's runtime on the model's int8 file"),
)


class RuntimeMenu(QMenu):
    sigChosen = Signal(str)  # the backend text ('' = each model's default)

    def __init__(self, owner: QWidget, chosen: str = "") -> None:
        super().__init__("CPU &Runtime", owner)
        self.setObjectName("aiRuntimeMenu")
        self.setToolTipsVisible(True)
        group = QActionGroup(self)
        group.setExclusive(True)
        self.runtime_actions = {}
        have_openvino = openvino_installed()
        for backend, text, tip in CHOICES:
            action = self.addAction(text)
            action.setCheckable(True)
            if backend.startswith("openvino") and not have_openvino:
                action.setEnabled(False)
                tip = "OpenVINO is not installed (pip install openvino)"
            action.setToolTip(tip)
            action.triggered.connect(lambda _=False, b=backend: self.sigChosen.emit(b))
            group.addAction(action)
            self.runtime_actions[backend] = action
        self.set_chosen(chosen)

    def set_chosen(self, backend: str) -> None:
        self.runtime_actions.get(backend, self.runtime_actions[""]).setChecked(True)

    @staticmethod
    def label(backend: str) -> str:
        return next((text.replace("&", "") for b, text, _ in CHOICES if b == backend),
                    backend)
