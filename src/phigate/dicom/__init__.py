"""Read, write and walk DICOM: the only place that knows pydicom's file-level quirks."""
