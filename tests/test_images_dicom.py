"""DICOM through the one reader (core.images.read_gray): windowing, MONOCHROME1, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest

from instructx2x.core.images import UnreadableImage, read_gray


def _dicom(pixels: np.ndarray, photometric="MONOCHROME2", window=None, frames=1, slope=None, intercept=None) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


RAMP = np.tile(np.linspace(0, 4095, 64), (32, 1)).round().astype(np.uint16)  # 12-bit, 32 x 64


def test_dicom_own_range_when_no_window(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(_dicom(RAMP))
    arr = read_gray(path)
    assert arr.shape == (32, 64) and arr.dtype == np.uint8
    assert arr[0, 0] == 0 and arr[0, -1] == 255 and (np.diff(arr[0].astype(int)) >= 0).all()


def test_dicom_window_is_applied():
    # window 1024..3072 (center 2048, width 2048): below -> 0, above -> 255, linear in between
    arr = read_gray(_dicom(RAMP, window=(2048, 2048)))
    x = RAMP[0].astype(float)
    assert (arr[0][x < 1020] == 0).all() and (arr[0][x > 3075] == 255).all()
    mid = (x > 1100) & (x < 3000)
    expected = ((x[mid] - 2047.5) / 2047 + 0.5) * 255
    assert np.abs(arr[0][mid] - expected).max() <= 1


def test_monochrome1_is_inverted_and_modality_lut_applied():
    plain = read_gray(_dicom(RAMP))
    inverted = read_gray(_dicom(RAMP, photometric="MONOCHROME1"))
    assert np.array_equal(inverted, 255 - plain)
    # rescale: stored 0..4095 -> -1024..3071; a window on the rescaled values
    arr = read_gray(_dicom(RAMP, window=(1024, 2048), slope=1, intercept=-1024))
    ref = read_gray(_dicom(RAMP, window=(2048, 2048)))
    assert np.array_equal(arr, ref)


def test_dicom_detected_without_suffix_and_errors_are_one_line(tmp_path):
    data = _dicom(RAMP)
    (tmp_path / "upload.bin").write_bytes(data)
    assert read_gray(tmp_path / "upload.bin").shape == (32, 64)
    multi = _dicom(np.stack([RAMP, RAMP]), frames=2)
    with pytest.raises(UnreadableImage, match="2 frames; one image is expected"):
        read_gray(multi)
    with pytest.raises(UnreadableImage, match="limit is 1,000"):
        read_gray(data, max_pixels=1000)
    with pytest.raises(UnreadableImage, match="constant"):
        read_gray(_dicom(np.full((32, 64), 7, np.uint16)))
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    with pytest.raises(UnreadableImage) as err:
        read_gray(tmp_path / "broken.dcm")
    assert "broken.dcm" in str(err.value) and "\n" not in str(err.value)
