"""The desktop viewer: the only package that imports PySide6 and pyqtgraph.

One subpackage per feature, and imports run one way only (checked by
`tests/test_import_contracts.py` from `importlinter.ini`):

    shell -> ai | annotate | training -> viewing -> document | common -> core, inference

`shell` starts the application and wires the features together; a feature gets the
`StudyDocument`, the views it draws on and a small `common.host.Host`, never the main window,
and never imports another feature. Anything slower than a frame runs in `common.workers`.
"""
