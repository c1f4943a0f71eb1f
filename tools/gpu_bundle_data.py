"""Writes the small dataset tools/gpu-check.sh trains and tests on: an LMDB of Caffe Datum records and its
mean.binaryproto, as `convert_imageset --resize_height 256 --resize_width 256` and `compute_image_mean` write
them (uncompressed BGR C x H x W uint8, keys %08d_<name>), without pycaffe.

The photos are flat colour blocks, fine for label 1 and coarse for label 0, so the archive packing them stays
small (a few hundred KiB for 256 records of 196,608 bytes each).

Usage: python gpu_bundle_data.py OUT_DIR [--records 256] [--seed 1]
Writes OUT_DIR/lmdb/ and OUT_DIR/mean.binaryproto.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import lmdb
import numpy as np

SIZE = 256


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def datum(image: np.ndarray, label: int) -> bytes:
    """caffe.Datum: channels=1, height=2, width=3, data=4 (bytes), label=5."""
    channels, height, width = image.shape
    data = image.tobytes()
    return (_field(1, 0) + _varint(channels) + _field(2, 0) + _varint(height) + _field(3, 0) + _varint(width)
            + _field(4, 2) + _varint(len(data)) + data + _field(5, 0) + _varint(label))


def blob_proto(mean: np.ndarray) -> bytes:
    """caffe.BlobProto with the legacy num/channels/height/width (1-4) and packed float data (5)."""
    channels, height, width = mean.shape
    data = mean.astype("<f4").tobytes()
    return (_field(1, 0) + _varint(1) + _field(2, 0) + _varint(channels) + _field(3, 0) + _varint(height)
            + _field(4, 0) + _varint(width) + _field(5, 2) + _varint(len(data)) + data)


def photo(rng: np.random.Generator, label: int) -> np.ndarray:
    block = int(rng.choice([4, 8, 16])) if label else int(rng.choice([64, 128]))
    cells = SIZE // block
    colours = rng.integers(0, 256, size=(3, cells, cells), dtype=np.uint8)
    return np.repeat(np.repeat(colours, block, axis=1), block, axis=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    total = np.zeros((3, SIZE, SIZE), dtype=np.float64)
    env = lmdb.open(str(args.out / "lmdb"), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for index in range(args.records):
            label = index % 2
            image = photo(rng, label)
            total += image
            txn.put(f"{index:08d}_{index}.jpg".encode(), datum(image, label))
    env.close()
    (args.out / "mean.binaryproto").write_bytes(blob_proto(total / args.records))
    print(f"{args.records} records of 3x{SIZE}x{SIZE} in {args.out / 'lmdb'}, mean in {args.out / 'mean.binaryproto'}")


if __name__ == "__main__":
    main()
