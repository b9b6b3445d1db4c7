"""The course's five labs as MedViewer models: one subpackage per lab (lab1 digits, lab2
nodule per slice with age/sex, lab3 series verdicts by fusion of slices, lab4 chest CT
segmentation, lab5 heart detection on radiographs). Each holds the torch architectures it
registers (`models.py`, listed in `architectures`), its viewer plugin (`plugin.py`, numpy only,
run through ONNX Runtime), its phantom data and its demo recipe (`demo.py`: data and model
built here, trained by medviewer.training, scored on held-out phantoms, exported to models/;
`python -m medviewer.labs.train_all` runs all five). `pretrained` loads a backbone's weights from
a local file (nothing is downloaded). The plugins never import torch: running a model needs
ONNX Runtime alone.
"""
