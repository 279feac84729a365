"""Write specs/data/penguins_measurements.csv: the penguins' four measurements, complete rows only.

    python scripts/make_penguins_measurements.py

The regression example (specs/penguins_regression.yaml) predicts body mass from the bill and
flipper measurements; a missing label cannot be filled, so the two penguins measured on no
column are left out. Nothing else changes: same rows in the same order, same values.
"""

from __future__ import annotations

import csv
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "specs" / "data"
COLUMNS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def main() -> None:
    with open(DATA / "penguins.csv", newline="") as source:
        rows = [[row[c] for c in COLUMNS] for row in csv.DictReader(source)]
    complete = [row for row in rows if "NA" not in row]
    with open(DATA / "penguins_measurements.csv", "w", newline="") as target:
        writer = csv.writer(target, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(complete)
    print(f"wrote {len(complete)} of {len(rows)} rows to {DATA / 'penguins_measurements.csv'}")


if __name__ == "__main__":
    main()
