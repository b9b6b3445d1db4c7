"""Start MedViewer: the same entry point as the `medviewer` console script."""
from medviewer.cli import program

program()
