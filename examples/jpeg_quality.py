"""Report how the JPEG files of an image folder were encoded.

The CIFAR-10 copy in ../shared/data is JPEG, not the original lossless
images, so the accuracies trained on it (README, "CIFAR-10 (JPEG copy)")
carry a caveat. This script states it in numbers: for every file (or a
sample), the IJG quality whose standard tables equal the file's quantization
tables, the chroma subsampling, and the bytes of image data (the file less
its headers).

    mkdir -p /tmp/cifar10_jpeg && tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp/cifar10_jpeg
    python examples/jpeg_quality.py /tmp/cifar10_jpeg            # all files
    python examples/jpeg_quality.py /tmp/cifar10_jpeg --sample 2000

The quality is found by encoding a blank image with Pillow (libjpeg) at each
quality 1..100 and comparing its quantization tables with the file's, so it
is exact for files written by libjpeg with its standard tables, and reported
as "non-standard" otherwise.
"""

import argparse
import collections
import io
import pathlib
import random

from PIL import Image

# `Image.layer` entries are (component id, h factor, v factor, table).
SUBSAMPLING_NAMES = {
    ((1, 1), (1, 1), (1, 1)): "4:4:4",
    ((2, 1), (1, 1), (1, 1)): "4:2:2",
    ((2, 2), (1, 1), (1, 1)): "4:2:0",
}


def standard_tables():
    """{quality: quantization tables} of libjpeg's standard tables at each
    IJG quality 1..100, as Pillow reads them back."""
    blank = Image.new("RGB", (8, 8))
    tables = {}
    for quality in range(1, 101):
        buffer = io.BytesIO()
        blank.save(buffer, "JPEG", quality=quality)
        with Image.open(buffer) as encoded:
            tables[quality] = _table_key(encoded.quantization)
    return tables


def _table_key(quantization):
    return tuple(tuple(quantization[i]) for i in sorted(quantization))


def scan_bytes(data):
    """Bytes of entropy-coded image data in a baseline JPEG file: the file
    less its headers (tables, markers), which are the same for every file."""
    start = data.find(b"\xff\xda")  # start of scan
    if start < 0:
        raise ValueError("No start-of-scan marker in the JPEG data.")
    header_length = int.from_bytes(data[start + 2:start + 4], "big")
    return len(data) - (start + 2 + header_length) - 2  # less end of image


def describe(data, tables_by_quality):
    """(quality or None, subsampling name, scan bytes) of one JPEG file.

    Args:
        data: The file's bytes.
        tables_by_quality: `standard_tables()`.

    Raises:
        ValueError: if `data` is not JPEG.
    """
    with Image.open(io.BytesIO(data)) as image:
        if image.format != "JPEG":
            raise ValueError(
                f"Expected JPEG data. Received: data in format {image.format}")
        key = _table_key(image.quantization)
        factors = tuple((h, v) for _, h, v, _ in image.layer)
    # A grey file has the luma table only.
    quality = next((q for q, tables in tables_by_quality.items()
                    if tables[:len(key)] == key), None)
    subsampling = SUBSAMPLING_NAMES.get(
        factors, "grey" if len(factors) == 1 else str(factors))
    return quality, subsampling, scan_bytes(data)


def summarize(files):
    """Counts of (quality, subsampling) and the mean scan bytes of `files`,
    an iterable of JPEG file contents."""
    tables = standard_tables()
    counts = collections.Counter()
    total_scan_bytes = 0
    for data in files:
        quality, subsampling, size = describe(data, tables)
        counts[(quality, subsampling)] += 1
        total_scan_bytes += size
    return counts, total_scan_bytes / max(sum(counts.values()), 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="folder searched for *.jpg / *.jpeg")
    parser.add_argument("--sample", type=int, default=0,
                        help="look at this many random files (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.sample < 0:
        parser.error(f"--sample must be >= 0. Received: --sample={args.sample}")

    folder = pathlib.Path(args.folder)
    if not folder.is_dir():
        parser.error(f"not a folder. Received: folder={folder}")
    paths = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg"))
    if not paths:
        parser.error(f"no .jpg / .jpeg files under folder={folder}")
    if args.sample and args.sample < len(paths):
        paths = random.Random(args.seed).sample(paths, args.sample)

    counts, mean_scan_bytes = summarize(p.read_bytes() for p in paths)
    print(f"{len(paths)} files under {folder}: {mean_scan_bytes:.0f} bytes of "
          f"image data per file on average (headers excluded)")
    for (quality, subsampling), n in counts.most_common():
        label = f"IJG quality {quality}" if quality else "non-standard tables"
        print(f"  {n:7d} ({100 * n / len(paths):5.1f}%)  {label}, "
              f"chroma {subsampling}")
    return counts, mean_scan_bytes


if __name__ == "__main__":
    main()
