"""examples/jpeg_quality.py: the JPEG encoding behind README's caveat on the
CIFAR-10 (JPEG copy) accuracies, checked on files written at known settings
and on the real copy in ../shared/data."""

import io
import itertools
import tarfile

import numpy as np
import pytest
from PIL import Image

from tests.example_modules import load_example
from tests.shared_data import CIFAR_TAR
from tests.shared_data import needs_cifar

jpeg_quality = load_example("jpeg_quality")

# Pillow's `subsampling` argument: 0 is 4:4:4, 1 is 4:2:2, 2 is 4:2:0.
PILLOW_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@pytest.fixture(scope="module")
def tables():
    return jpeg_quality.standard_tables()


def _jpeg(pixels, **save_args):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **save_args)
    return buffer.getvalue()


def _noise(seed, shape=(32, 32, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


@pytest.mark.parametrize("quality,subsampling", list(itertools.product(
    (10, 50, 75, 76, 95), PILLOW_SUBSAMPLING)))
def test_recovers_quality_and_subsampling(tables, quality, subsampling):
    data = _jpeg(_noise(quality), quality=quality,
                 subsampling=PILLOW_SUBSAMPLING[subsampling])
    found_quality, found_subsampling, _ = jpeg_quality.describe(data, tables)
    assert found_quality == quality
    assert found_subsampling == subsampling


def test_grey_file_matched_on_its_luma_table(tables):
    data = _jpeg(_noise(0, (32, 32)), quality=60)
    assert jpeg_quality.describe(data, tables)[:2] == (60, "grey")


def test_custom_tables_are_not_called_a_quality(tables):
    flat = [[7] * 64, [9] * 64]
    data = _jpeg(_noise(1), qtables=flat)
    assert jpeg_quality.describe(data, tables)[0] is None


def test_scan_bytes_excludes_the_same_headers_for_any_content():
    # Same settings, different content: the headers must be identical bytes
    # and only the scan differs; noise needs far more bytes than a flat image.
    files = [_jpeg(pixels, quality=75) for pixels in
             (_noise(2), _noise(3), np.full((32, 32, 3), 128, np.uint8))]
    scans = [jpeg_quality.scan_bytes(data) for data in files]
    headers = {data[:len(data) - scan - 2] for data, scan in zip(files, scans)}
    assert len(headers) == 1
    assert all(data.endswith(b"\xff\xd9") for data in files)
    assert 2 < scans[2] < 20
    assert scans[0] > 10 * scans[2]


@pytest.mark.parametrize("shape,components", [((16, 16, 3), 3), ((16, 16), 1)])
def test_scan_starts_after_the_start_of_scan_segment(shape, components):
    # The SOS segment is 6 + 2 * components bytes long (JPEG spec, B.2.3),
    # after its 2-byte marker; the file ends with the 2-byte EOI marker.
    data = _jpeg(_noise(5, shape), quality=75)
    scan_start = data.index(b"\xff\xda") + 2 + 6 + 2 * components
    assert jpeg_quality.scan_bytes(data) == len(data) - scan_start - 2


def test_rejects_non_jpeg_data(tables):
    buffer = io.BytesIO()
    Image.fromarray(_noise(4)).save(buffer, "PNG")
    with pytest.raises(ValueError, match="format PNG"):
        jpeg_quality.describe(buffer.getvalue(), tables)


def test_main_counts_every_file_of_a_folder(tmp_path, capsys):
    for i, quality in enumerate((75, 75, 90)):
        (tmp_path / "class_a").mkdir(exist_ok=True)
        (tmp_path / "class_a" / f"{i}.jpg").write_bytes(
            _jpeg(_noise(i), quality=quality, subsampling=2))
    counts, _ = jpeg_quality.main([str(tmp_path)])
    assert counts == {(75, "4:2:0"): 2, (90, "4:2:0"): 1}
    assert "3 files under" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--sample", "-1"], "--sample=-1"),
    ([], "no .jpg"),
])
def test_main_rejects_bad_arguments(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        jpeg_quality.main([str(tmp_path), *argv])
    assert message in capsys.readouterr().err


@needs_cifar
def test_shared_cifar10_copy_is_quality_75_with_420_chroma():
    # README's caveat: the first 500 files of the archive.
    with tarfile.open(CIFAR_TAR) as tar:
        files = []
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                files.append(tar.extractfile(member).read())
                if len(files) == 500:
                    break
    counts, mean_scan_bytes = jpeg_quality.summarize(files)
    assert counts == {(75, "4:2:0"): 500}
    assert 200 < mean_scan_bytes < 400  # vs 3,072 bytes of raw pixels
