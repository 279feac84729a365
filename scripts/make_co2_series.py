"""Write specs/data/co2_weekly.csv: the Mauna Loa weekly CO2 series that ships with statsmodels.

    pip install statsmodels          # needed by this script only; specs read the CSV
    python scripts/make_co2_series.py

The series (statsmodels.datasets.co2: weekly means, in ppm, March 1958 to December 2001,
2284 weeks) has 59 weeks without a measurement; they are filled by linear interpolation in
time, so the CSV is one row per week, in order, ready for a `window` stage. Provenance:
specs/data/README.md.
"""

from __future__ import annotations

from pathlib import Path

import statsmodels.api as sm

OUT = Path(__file__).resolve().parents[1] / "specs" / "data" / "co2_weekly.csv"


def main() -> None:
    series = sm.datasets.co2.load_pandas().data["co2"]
    filled = series.interpolate(method="time")
    lines = ["week,co2"] + [f"{day:%Y-%m-%d},{value:.2f}" for day, value in filled.items()]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(filled)} weeks, {int(series.isna().sum())} interpolated")


if __name__ == "__main__":
    main()
