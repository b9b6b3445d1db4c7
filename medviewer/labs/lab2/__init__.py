"""Lab 2: slice classification on a previous / current / next 3-channel input.

The lab's networks (VGG16 without max-pooling, ResNet50 and a 56 x 56 Swin Transformer with
age and sex concatenated to their features) and a light ResNet-style CNN for the shipped demo
model, which tells slices through a lung nodule from slices without one. `plugin` (numpy
only) runs the exported model; `models` builds the torch networks; `data` makes the phantom
training data; `demo` trains the shipped model.
"""
