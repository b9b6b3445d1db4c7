"""Application start, the main window, its menus, docks and settings: the one place that
wires the features (ai, annotate, training) to the viewing widgets and to each other."""
