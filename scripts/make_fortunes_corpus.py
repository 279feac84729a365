"""Write a labelled text corpus, one folder of .txt files per class, from Debian's fortunes.

    apt-get install fortunes        # the fortune cookie files, /usr/share/games/fortunes
    python scripts/make_fortunes_corpus.py ~/data/fortunes [--classes computers politics science songs-poems]

Each fortune file is a category of short texts (quotations, jokes, verse) separated by
lines holding a single `%`; the corpus has one folder per category, one file per text
(`0000.txt`, ...), which the `text_folder` source reads as (text, label), as
keras.utils.text_dataset_from_directory does. The corpus is written outside the repository
(it is a few megabytes); provenance: specs/data/README.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
CLASSES = ("computers", "politics", "science", "songs-poems")


def texts(category: Path) -> list[str]:
    """The texts of one fortune file, stripped, without empty ones."""
    body = category.read_text(encoding="utf-8", errors="replace")
    items, current = [], []
    for line in body.splitlines():
        if line.strip() == "%":
            items.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    items.append("\n".join(current).strip())
    return [t for t in items if t]


def write_corpus(out: Path, classes=CLASSES, source: Path = FORTUNES) -> dict:
    """Write out/<class>/<i>.txt for every text of every class; {class: number of texts}."""
    counts = {}
    for name in classes:
        category = source / name
        if not category.is_file():
            raise SystemExit(f"no fortune file {category} (apt-get install fortunes)")
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        found = texts(category)
        for i, text in enumerate(found):
            (folder / f"{i:04d}.txt").write_text(text + "\n", encoding="utf-8")
        counts[name] = len(found)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the corpus folder to write (outside the repository)")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES), help="fortune files, one class each")
    parser.add_argument("--source", type=Path, default=FORTUNES, help="where the fortune files are")
    arguments = parser.parse_args()
    counts = write_corpus(arguments.out, arguments.classes, arguments.source)
    print(f"wrote {sum(counts.values())} texts to {arguments.out}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
