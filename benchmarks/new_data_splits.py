"""Write the train/dev case lists of the new data in ``shared/data`` (the rule of issue 36).

The rule, written before any model was trained or scored on these sets:

* polyp: CVC-ClinicDB video sequences 24-29 are dev (133 frames), sequences 1-23 train; every
  Kvasir-SEG frame trains (Kvasir-SEG has no sequence column; none of it duplicates dev).
* drive: the data set's own test split (01-20) is dev, its training split (21-40) trains.
* ct/covid-lung: volumes 8 and 9 are dev, volumes 1-7 train; slices with no labelled pixel are
  left out of both (an empty mask has no box).
* ct/lung-hu: the last 50 files by name are dev, the other 216 train.
* ct/unlabelled: distillation only (no masks).

Splits are by video sequence or volume, never by frame or slice. Output: one text file per set
and part in ``configs/splits/`` (file stems, one per line), read by the ``cases`` key of a
source (``configs/data_new.yaml``) and by ``umedsam evaluate --cases``.

    python benchmarks/new_data_splits.py [--data ../shared/data] [--out configs/splits]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

DEV_CVC_SEQUENCES = range(24, 30)
DEV_COVID_VOLUMES = ("vol8", "vol9")
DEV_LUNG_HU_LAST = 50


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def make_splits(data: Path) -> dict[str, list[str]]:
    """The case lists by name (``<set>_<part>``), stems sorted."""
    polyp = _rows(data / "polyp" / "index.csv")
    cvc = [r for r in polyp if r["dataset"] == "cvc-clinicdb"]
    is_dev = [int(r["video_sequence"]) in DEV_CVC_SEQUENCES for r in cvc]
    drive = _rows(data / "drive" / "index.csv")
    covid = [
        r
        for r in _rows(data / "ct" / "covid-lung" / "index.csv")
        if int(r["lung_px"]) + int(r["infection_px"]) > 0
    ]
    lung = sorted(_stem(r["image"]) for r in _rows(data / "ct" / "lung-hu" / "index.csv"))
    splits = {
        "cvc_dev": [_stem(r["image"]) for r, d in zip(cvc, is_dev, strict=True) if d],
        "cvc_train": [_stem(r["image"]) for r, d in zip(cvc, is_dev, strict=True) if not d],
        "kvasir_train": [_stem(r["image"]) for r in polyp if r["dataset"] == "kvasir-seg"],
        "drive_dev": [_stem(r["image"]) for r in drive if r["drive_split"] == "test"],
        "drive_train": [_stem(r["image"]) for r in drive if r["drive_split"] == "training"],
        "covid_dev": [_stem(r["image"]) for r in covid if r["volume"] in DEV_COVID_VOLUMES],
        "covid_train": [_stem(r["image"]) for r in covid if r["volume"] not in DEV_COVID_VOLUMES],
        "lunghu_dev": lung[-DEV_LUNG_HU_LAST:],
        "lunghu_train": lung[:-DEV_LUNG_HU_LAST],
    }
    return {name: sorted(stems) for name, stems in splits.items()}


def main() -> None:
    """Write every list; print its size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("configs/splits"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, stems in make_splits(args.data).items():
        header = f"# {name}: {len(stems)} cases, written by benchmarks/new_data_splits.py\n"
        (args.out / f"{name}.txt").write_text(header + "\n".join(stems) + "\n", encoding="utf-8")
        print(f"{name:14s} {len(stems):5d}")


if __name__ == "__main__":
    main()
