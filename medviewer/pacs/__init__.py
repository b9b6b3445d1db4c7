"""PACS: query, retrieve and send over DICOM networking (pynetdicom) and DICOMweb.

A layer beside core: it may import medviewer.core, never ui, inference, training or labs;
ui may import it. No Qt, no torch.
"""
