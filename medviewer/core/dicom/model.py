"""The index of a scanned tree: patients -> studies -> series (one stack each) -> instances.

Plain dataclasses, filled by `scan` from headers only and cached in SQLite. A `Series` here is
always one geometrically consistent *stack*: a DICOM series whose images differ in orientation
or size is split into several `Series` objects sharing the SeriesInstanceUID, with
`stack_index` / `stack_count` telling them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Instance:
    """Header facts of one image file, enough to sort, group and read its pixels later."""

    path: str
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    instance_number: int | None = None
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 1
    position: tuple[float, float, float] | None = None  # ImagePositionPatient
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (6 values)
    pixel_spacing: tuple[float, float] | None = None  # (row spacing, column spacing) mm
    slice_thickness: float | None = None
    acquisition_time: str = ""  # AcquisitionTime / ContentTime, for ordering 4D phases
    transfer_syntax_uid: str = ""
    photometric: str = ""
    samples_per_pixel: int = 1
    bits_allocated: int = 0
    pixel_representation: int = 0
    # Byte offset of the Pixel Data value in the file: for native (uncompressed) syntaxes the
    # first pixel byte; for encapsulated ones the Basic Offset Table item (the loader also
    # accepts the first fragment item). None when unknown.
    pixel_data_offset: int | None = None
    rescale_slope: float | None = None  # RescaleSlope, None when absent
    rescale_intercept: float | None = None  # RescaleIntercept, None when absent
    temporal_position: int | None = None  # TemporalPositionIdentifier, for 4D ordering
    # Float (32-bit) or Double Float (64-bit, BitsAllocated says which) Pixel Data instead of
    # integer Pixel Data: parametric maps such as ADC
    float_pixels: bool = False
    # Siemens mosaic: slices tiled in the one image (NumberOfImagesInMosaic), 0 otherwise
    mosaic_images: int = 0


@dataclass
class Series:
    """One loadable stack of images."""

    series_instance_uid: str
    study_instance_uid: str = ""
    patient_key: str = ""
    modality: str = ""
    series_number: int | None = None
    description: str = ""
    date: str = ""  # SeriesDate or StudyDate, YYYYMMDD
    time: str = ""
    body_part: str = ""
    stack_index: int = 0
    stack_count: int = 1
    instances: list[Instance] = field(default_factory=list)

    @property
    def image_count(self) -> int:
        return sum(i.mosaic_images or max(1, i.number_of_frames) for i in self.instances)

    @property
    def key(self) -> str:
        """Unique key of this stack in the index."""
        return f"{self.series_instance_uid}#{self.stack_index}"


@dataclass
class Study:
    study_instance_uid: str
    date: str = ""
    time: str = ""
    description: str = ""
    accession_number: str = ""
    series: list[Series] = field(default_factory=list)


@dataclass
class Patient:
    patient_id: str
    name: str = ""
    birth_date: str = ""
    sex: str = ""
    studies: list[Study] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.patient_id}|{self.name}"


@dataclass
class FileProblem:
    """A file that looked like DICOM but could not be indexed or read, with the reason."""

    path: str
    reason: str


@dataclass
class ScanResult:
    patients: list[Patient] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    files_seen: int = 0
    files_skipped: int = 0  # not DICOM: ignored quietly
    cancelled: bool = False

    def all_series(self) -> list[Series]:
        return [s for p in self.patients for st in p.studies for s in st.series]
