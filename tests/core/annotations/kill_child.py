"""A process that saves one series' annotations (or its autosave) in a loop until killed.

    python kill_child.py save|autosave <data folder> <first index>

Save i writes a SEG whose description names reader r<i> (none when i % 3 == 0: the labels
were all erased, so the SEG is removed), an SR by r<i> with model 'model:m@1.<i>' and its
sidecar; autosave i records model 'model:m@1.<i>'. It prints 'done <i>' after each completed
save, so the killer knows the old and the new index, and 'ready' after the first (slow: lazy
imports), so that a kill soon after lands in any part of a save.
"""

from __future__ import annotations

import itertools
import sys

from medviewer.core.annotations import LabelMap, Workspace, save_autosave
from medviewer.core.annotations.boxes import AnnotatedBox, BoxSet
from medviewer.core.dicom import load_series, scan


def main(kind: str, folder: str, first: int) -> None:
    volume = load_series(scan(folder, cache=False).all_series()[0])
    ws = Workspace.for_series(volume)
    labelmap = LabelMap.for_volume(volume)
    value = labelmap.table.add("lesion").value
    for i in itertools.count(first):
        labelmap.array[...] = 0
        if i % 3:
            labelmap.array[i % labelmap.shape[0], 4:12, 4:12] = value
        boxes = BoxSet([AnnotatedBox(1, 1, 3 + i % 20, 5, 0, f"mass {i}")])
        if kind == "autosave":
            save_autosave(ws, labelmap, boxes, model=f"model:m@1.{i}")
        else:
            with ws.saving(ws.generation()) as w:
                w.save_labels(labelmap.array, volume, labelmap.table, annotator=f"r{i}")
                w.save_sr(volume, boxes, annotator=f"r{i}", model=f"model:m@1.{i}")
        print(f"done {i}", flush=True)
        if i == first:
            print("ready", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
