"""DICOM SEG out: a label map on a DICOM series' grid becomes a DICOM Segmentation that references the source
instances, carries the card's labels, colours and codes, passes dicom3tools' ``dciodvfy`` without errors and
reads back voxel for voxel on the source grid; ``deepmed infer SERIES -o x.dcm`` writes one, bad requests are
refused in one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SHARED_DATA
from test_training import TINY, write_tiny_dataset

from deepmed.cli.main import main
from deepmed.errors import DeepMedError
from deepmed.model.card import Label
from deepmed.model.terminology import TISSUE, Code, Terminology

pydicom = pytest.importorskip("pydicom", reason="DICOM SEG needs the dicom extra (highdicom, pydicom)")
pytest.importorskip("highdicom", reason="DICOM SEG needs the dicom extra (highdicom)")

from deepmed.io.dicom_seg import read_dicom_seg, write_dicom_seg  # noqa: E402
from deepmed.io.image_io import read_image  # noqa: E402
from deepmed.model.card import ModelCard  # noqa: E402

LIVER = Terminology(Code("SCT", "91723000", "Anatomical Structure"), Code("SCT", "10200004", "Liver"))


def dciodvfy_errors(path: Path) -> list[str]:
    """The lines dicom3tools' validator reports as errors (warnings allowed); skips where it is not installed."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools; `make test` installs it where apt works)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def values_from_segments(contents, labels) -> np.ndarray:
    """The restored map of segment numbers -> the labels' values, matched by segment label (the label name)."""
    numbers = sitk.GetArrayFromImage(contents.image)
    by_name = {label.name: label.value for label in labels}
    values = np.zeros(numbers.shape, np.int32)
    for segment in contents.segments:
        values[numbers == segment.number] = by_name[segment.label]
    return values


@pytest.fixture(scope="module")
def shared_ct(tmp_path_factory):
    """The shared DICOM CT with its UIDs restored (the shared copy is anonymised with Study/Series/SOP UIDs
    blanked, which a SEG cannot reference) and its TotalSegmentator label map resampled onto the series' grid
    (the NIfTI lies on the same voxels, its y axis flipped: nearest neighbour only reorders them)."""
    from pydicom.uid import generate_uid

    source = SHARED_DATA / "totalsegmentator"
    if not source.is_dir():
        pytest.fail(f"the real scans are expected in {SHARED_DATA} (shared/ beside the checkout)")
    folder = tmp_path_factory.mktemp("ct_dicom")
    study, series = generate_uid(entropy_srcs=["study"]), generate_uid(entropy_srcs=["series"])
    for f in sorted((source / "example_ct_dicom").iterdir()):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.save_as(folder / f"{f.name}.dcm")
    ct = read_image(folder)
    seg = sitk.ReadImage(str(source / "example_seg_dicom.nii.gz"))
    labels = sitk.Resample(seg, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return source / "example_ct_dicom", folder, ct, labels


def test_a_seg_of_the_shared_ct_validates_and_round_trips_voxel_for_voxel(shared_ct, tmp_path):
    original, folder, ct, label_map = shared_ct
    array = sitk.GetArrayFromImage(label_map)
    values = sorted(set(np.unique(array).tolist()) - {0})
    assert len(values) == 31 and array[::-1].tolist() != array.tolist()  # many labels, not symmetric in z
    labels = [Label(v, f"organ {v}", (v, 255 - v, 128)) for v in values]
    labels[0] = Label(values[0], "liver", (221, 130, 101), "10200004", LIVER)
    path = write_dicom_seg(label_map, [folder], labels, tmp_path / "seg.dcm", algorithm="TestNet", version="1.0")
    assert dciodvfy_errors(path) == []
    contents = read_dicom_seg(path, ct)
    np.testing.assert_array_equal(values_from_segments(contents, labels), array)
    liver, other = contents.segments[0], contents.segments[1]
    assert (liver.label, liver.category, liver.type, liver.color) == ("liver", LIVER.category, LIVER.type,
                                                                      (221, 130, 101))
    assert (other.category, other.type, other.color) == (TISSUE, TISSUE, (values[1], 255 - values[1], 128))
    seg = pydicom.dcmread(path)
    # the shared files keep their SOP Instance UIDs only in the file meta header: the SEG references those
    sources = {pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
               for f in folder.iterdir()}
    referenced = {item.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                  for item in s.ReferencedInstanceSequence}
    assert referenced == sources and seg.StudyInstanceUID == pydicom.dcmread(next(folder.iterdir())).StudyInstanceUID
    # the anonymised original has no Study / Series UIDs to reference: refused, naming a file and the UIDs
    with pytest.raises(DeepMedError, match=r"example_ct_dicom.*StudyInstanceUID, SeriesInstanceUID"):
        write_dicom_seg(label_map, [original], labels, tmp_path / "anon.dcm")
    assert not (tmp_path / "anon.dcm").exists()


def test_a_map_off_the_series_grid_or_with_unnamed_values_is_refused(shared_ct, tmp_path):
    _, folder, ct, label_map = shared_ct
    labels = [Label(v, f"organ {v}") for v in set(np.unique(sitk.GetArrayViewFromImage(label_map)).tolist()) - {0}]
    shifted = sitk.Image(label_map)
    shifted.SetOrigin([o + 0.5 for o in ct.GetOrigin()])
    with pytest.raises(DeepMedError, match="not on a slice of the image's grid"):
        write_dicom_seg(shifted, [folder], labels, tmp_path / "shifted.dcm")
    with pytest.raises(DeepMedError, match=r"values \[\d+\] that no label"):
        write_dicom_seg(label_map, [folder], labels[1:], tmp_path / "unnamed.dcm")
    assert not list(tmp_path.iterdir())


def write_ct_series(image: sitk.Image, folder: Path, slope: float = 0.001) -> None:
    """``image`` as a CT series (int16 + rescale), one file per slice, file names in reverse slice order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    direction = np.array(image.GetDirection()).reshape(3, 3)
    array = np.rint(sitk.GetArrayFromImage(image) / slope).astype(np.int16)
    for z, plane in enumerate(array):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.TransferSyntaxUID = CTImageStorage, ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.SOPClassUID, ds.Modality, ds.PatientID, ds.PatientName = CTImageStorage, "CT", "P1", "Test^Case"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.ImageOrientationPatient = [float(v) for v in direction[:, :2].T.ravel()]
        ds.ImagePositionPatient = list(image.TransformIndexToPhysicalPoint((0, 0, z)))
        ds.PixelSpacing = [image.GetSpacing()[1], image.GetSpacing()[0]]
        ds.SliceThickness, ds.InstanceNumber = image.GetSpacing()[2], z + 1
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.ImageType = 0, slope, ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelData = plane.tobytes()
        ds.save_as(folder / f"slice{len(array) - z:03d}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    """A tiny trained segmentation model and one of its oblique cases as a DICOM series."""
    from deepmed.training.driver import train

    root = tmp_path_factory.mktemp("dicom_case")
    manifest = write_tiny_dataset(root / "data")
    model_dir = train(manifest, root / "model", overrides=TINY + ["training.epochs=1"], progress="none")
    write_ct_series(sitk.ReadImage(str(manifest.parent / "c0.nii.gz")), root / "series")
    return model_dir, root / "series", manifest.parent / "c0.nii.gz"


@pytest.mark.slow
def test_infer_writes_a_seg_equal_to_the_label_file_and_refuses_bad_requests(dicom_case, tmp_path, capsys):
    model_dir, series, nifti = dicom_case
    common = ["--model", str(model_dir), "--device", "cpu", "--progress", "none"]
    assert main(["infer", *common, str(series), "-o", str(tmp_path / "labels.nii.gz")]) == 0
    assert main(["infer", *common, str(series), "-o", str(tmp_path / "labels.dcm")]) == 0
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels.nii.gz")))
    card = ModelCard.read(model_dir)
    contents = read_dicom_seg(tmp_path / "labels.dcm", read_image(series))
    assert [s.label for s in contents.segments] == ["box", "core"] and expected.max() > 0
    np.testing.assert_array_equal(values_from_segments(contents, card.foreground_labels), expected)
    assert dciodvfy_errors(tmp_path / "labels.dcm") == []
    capsys.readouterr()
    # a NIfTI input has no instances to reference: one line naming the file, exit 2, nothing written
    assert main(["infer", *common, str(nifti), "-o", str(tmp_path / "nifti.dcm")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(nifti) in err and "DICOM series" in err and "Traceback" not in err
    assert not (tmp_path / "nifti.dcm").exists()


def test_only_label_outputs_of_a_dicom_series_can_become_a_seg(tmp_path):
    from deepmed.inference.seg_output import check_dicom_seg_job

    with pytest.raises(DeepMedError, match=r"out\.dcm: a DICOM SEG holds segments; .* scalar_volume"):
        check_dicom_seg_job("scalar_volume", [tmp_path], tmp_path / "out.dcm")
    with pytest.raises(DeepMedError, match="needs one DICOM series as input, got 2"):
        check_dicom_seg_job("label_map", [tmp_path, tmp_path], tmp_path / "out.dcm")
    with pytest.raises(DeepMedError, match="needs a DICOM series as input; this holds none"):
        check_dicom_seg_job("label_map", [tmp_path], tmp_path / "out.dcm")


def test_a_folder_of_dcm_files_is_a_series_when_they_are_one(tmp_path):
    from test_image_io import _write_dicom_series

    from deepmed.data.scan import _looks_like_dicom_folder

    _write_dicom_series(tmp_path / "one", "1.2.3.4.1")
    assert _looks_like_dicom_folder(tmp_path / "one")  # one series saved one .dcm file per slice
    _write_dicom_series(tmp_path / "two", "1.2.3.4.1")
    _write_dicom_series(tmp_path / "two", "1.2.3.4.2")
    assert not _looks_like_dicom_folder(tmp_path / "two")  # several series side by side: a folder of images


def test_each_instance_gets_the_slice_it_lies_on_whatever_the_file_order(shared_ct):
    from deepmed.io.dicom_seg import _frames_of_sources, _read_headers

    _, folder, ct, label_map = shared_ct
    files = [sorted(folder.iterdir())[i] for i in np.random.default_rng(0).permutation(20)]  # any order
    frames = _frames_of_sources(label_map, _read_headers(files), files)
    array = sitk.GetArrayFromImage(label_map)
    for frame, f in zip(frames, files):
        z = ct.TransformPhysicalPointToIndex(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient)[2]
        np.testing.assert_array_equal(frame, array[z])
    assert not np.array_equal(frames, array)  # that order really differs from the grid's


def test_overlapping_masks_stay_overlapping_segments(shared_ct, tmp_path):
    _, folder, ct, _ = shared_ct
    masks = np.zeros((*reversed(ct.GetSize()), 2), np.uint8)
    masks[5:12, 100:300, 150:350, 0] = 1
    masks[8:15, 200:400, 250:450, 1] = 1  # overlaps the first
    image = sitk.GetImageFromArray(masks, isVector=True)
    image.CopyInformation(ct)
    labels = [Label(1, "prostate"), Label(2, "lesion")]
    contents = read_dicom_seg(write_dicom_seg(image, [folder], labels, tmp_path / "masks.dcm"), ct)
    assert contents.image.GetNumberOfComponentsPerPixel() == 2 and [s.label for s in contents.segments] == [
        "prostate", "lesion"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(contents.image), masks)


def test_a_result_with_nothing_found_is_still_a_valid_seg(shared_ct, tmp_path, recwarn):
    _, folder, ct, _ = shared_ct
    empty = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(ct)
    path = write_dicom_seg(empty, [folder], [Label(1, "liver"), Label(2, "lesion")], tmp_path / "empty.dcm")
    assert not [w for w in recwarn if "empty" in str(w.message)]
    assert dciodvfy_errors(path) == []
    contents = read_dicom_seg(path, ct)
    assert [s.label for s in contents.segments] == ["liver", "lesion"]
    assert not sitk.GetArrayViewFromImage(contents.image).any()
