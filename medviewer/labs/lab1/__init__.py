"""Lab 1: handwritten digits 0-9 with a fully connected SimpleNN (scikit-learn's 8 x 8 digits).

`plugin` (numpy only) runs the exported model in the viewer and writes the course's
submission CSV; `models` builds the torch network; `demo` trains the shipped model.
"""
