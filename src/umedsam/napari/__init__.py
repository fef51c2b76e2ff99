"""umedsam in napari (``pip install "umedsam[napari]"``): a reader for NIfTI, NRRD, DICOM series
and challenge npz, a sample volume, and the dock widget for box, click and scribble prompts.

Registered with napari through ``napari.yaml`` (npe2); importing this package needs no napari.
"""
