"""The Qt user interface: the only package that imports PySide6 and pyqtgraph.

Thin by design: widgets bind to core objects and call core functions; anything slower than a
frame runs in `medviewer.ui.workers`. Start the application with `medviewer.ui.app.run()`.
"""
