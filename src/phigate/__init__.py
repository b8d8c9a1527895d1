"""phigate: de-identify DICOM studies by versioned policy and share them without letting PHI out."""

__version__ = "0.1.0"
