"""Readers and writers keep spacing, origin and direction exactly; bad files give one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import LEFT_HANDED, OBLIQUE, PERMUTED, make_image
from naming import naming

from deepmed.errors import DeepMedError
from deepmed.io import Grid, grid_differences, read_channels, read_image, write_image
from deepmed.io.geometry import align_to_grid, same_voxel_centres

FORMATS = [".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"]


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("direction", [OBLIQUE, LEFT_HANDED, PERMUTED])
def test_round_trip_keeps_geometry_and_values(tmp_path, ext, direction):
    image = make_image(direction=direction)
    path = write_image(image, tmp_path / f"img{ext}")
    back = read_image(path)
    assert grid_differences(back, image) == []
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_label_written_as_smallest_integer_type(tmp_path):
    image = make_image(array=np.array([[[0.0, 1.2], [2.9, 7.0]]], dtype=np.float32))
    back = read_image(write_image(image, tmp_path / "lab.nrrd", label=True))
    assert back.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), [[[0, 1], [3, 7]]])
    assert Grid.of(back) == Grid.of(read_image(write_image(image, tmp_path / "img.nrrd")))


def test_write_checks_reference_grid(tmp_path):
    image = make_image()
    other = make_image(origin=(0, 0, 0))
    with pytest.raises(DeepMedError, match=naming("origin")):
        write_image(image, tmp_path / "x.nii.gz", reference=other)
    assert not (tmp_path / "x.nii.gz").exists()


def test_write_into_missing_folder_is_one_line_error(tmp_path):
    with pytest.raises(DeepMedError, match=naming(str(tmp_path / "missing"))):
        write_image(make_image(), tmp_path / "missing" / "x.nii.gz")


def test_vector_and_4d_images_read_as_channels(tmp_path):
    a, b = make_image(seed=1), make_image(seed=2)
    vector = sitk.Compose(a, b)
    sitk.WriteImage(vector, str(tmp_path / "vec.nrrd"))
    channels = read_channels(tmp_path / "vec.nrrd")
    assert len(channels) == 2
    np.testing.assert_array_equal(sitk.GetArrayFromImage(channels[1]), sitk.GetArrayFromImage(b))
    assert grid_differences(channels[0], a) == []

    four_d = sitk.JoinSeries([sitk.Cast(a, sitk.sitkFloat32), sitk.Cast(b, sitk.sitkFloat32)])
    sitk.WriteImage(four_d, str(tmp_path / "t.nii.gz"))
    channels = read_channels([tmp_path / "t.nii.gz"])
    assert [c.GetDimension() for c in channels] == [3, 3]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(channels[0]), sitk.GetArrayFromImage(a))


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(DeepMedError, match=naming("nope.nii.gz")):
        read_image(tmp_path / "nope.nii.gz")
    good = write_image(make_image(shape_zyx=(20, 20, 20)), tmp_path / "good.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(DeepMedError, match=naming("truncated.nii.gz")) as info:
        read_image(truncated)
    assert "\n" not in str(info.value)
    junk = tmp_path / "junk.nrrd"
    junk.write_text("this is not an image")
    with pytest.raises(DeepMedError, match=naming("junk.nrrd")):
        read_image(junk)


def _write_dicom_series(folder, uid, n=3, modality="CT"):
    folder.mkdir(exist_ok=True)
    for z in range(n):
        slice_ = sitk.GetImageFromArray(np.full((4, 5), z, dtype=np.int16))
        slice_.SetSpacing((0.5, 0.5))
        for tag, value in {"0008|0060": modality, "0020|000e": uid, "0020|000d": "1.2.3", "0020|0013": str(z + 1),
                           "0020|0032": f"0\\0\\{z * 2.0}", "0020|0037": "1\\0\\0\\0\\1\\0",
                           "0008|103e": f"series {uid[-1]}", "0028|0030": "0.5\\0.5"}.items():
            slice_.SetMetaData(tag, value)
        slice_.SetMetaData("0008|0018", f"{uid}.{z + 1}")
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"{uid}_{z}.dcm"))
        writer.Execute(slice_)


def test_dicom_folder_with_several_series_asks_to_choose(tmp_path):
    _write_dicom_series(tmp_path / "dcm", "1.2.3.4.1")
    _write_dicom_series(tmp_path / "dcm", "1.2.3.4.2", n=4)
    with pytest.raises(DeepMedError, match=naming("dcm")) as info:
        read_image(tmp_path / "dcm")
    assert "1.2.3.4.1" in str(info.value) and "1.2.3.4.2" in str(info.value)
    chosen = read_image(f"{tmp_path / 'dcm'}#1.2.3.4.2")
    assert chosen.GetSize() == (5, 4, 4)
    assert chosen.GetSpacing()[2] == pytest.approx(2.0)


def test_real_dicom_series_reads_as_one_volume_on_its_label_grid(shared_data):
    folder = shared_data / "totalsegmentator" / "example_ct_dicom"
    ct = read_image(folder)
    label = read_image(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz")
    assert ct.GetSize() == (512, 512, 20)
    np.testing.assert_allclose(ct.GetSpacing(), (0.976562, 0.976562, 2.0), atol=1e-4)
    # The label map stores the same voxels with a flipped y axis: same physical grid, aligned exactly.
    assert same_voxel_centres(ct, label)
    aligned = align_to_grid(label, ct)
    assert grid_differences(aligned, ct) == []
    index = (100, 200, 10)
    world = ct.TransformIndexToPhysicalPoint(index)
    assert aligned[index] == label[label.TransformPhysicalPointToIndex(world)]
    assert np.count_nonzero(sitk.GetArrayViewFromImage(aligned)) == np.count_nonzero(sitk.GetArrayViewFromImage(label))


def test_different_physical_grids_are_not_aligned():
    a = make_image()
    b = make_image(spacing=(0.7, 1.3, 3.0))
    assert not same_voxel_centres(a, b)
    with pytest.raises(ValueError, match="spacing"):
        align_to_grid(b, a)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_truncated_files_are_refused_in_every_format(tmp_path, ext):
    good = write_image(make_image(shape_zyx=(20, 20, 20)), tmp_path / f"good{ext}")
    data = good.read_bytes()
    bad = tmp_path / f"bad{ext}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DeepMedError, match=naming(f"bad{ext}")):
        read_image(bad)
