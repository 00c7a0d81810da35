"""The share of the intent corpus the assistant understands.

    .venv/bin/python -m bench.intents [--catalog catalog/demo.toml] [--corpus tests/fixtures/intents.tsv]

Each message of the corpus (real-sounding citizen messages: typos, dialect, mixed Chinese and
English, voice-recognition text with fillers) is read as the engine reads text outside a
question (handlers.words.intent_of: the global words, then the service matcher of
storage/matching.py over the catalog) and compared with its expected intent. Prints the share
understood and every miss.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from handlers.words import intent_of
from storage.catalog import read_catalog
from storage.matching import catalog_entries

ROOT = Path(__file__).resolve().parent.parent


def read_corpus(path: Path) -> list[tuple[str, str]]:
    """The (message, expected intent) pairs of a corpus file; "#" lines are comments."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        message, _, intent = line.partition("\t")
        pairs.append((message, intent.strip()))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=ROOT / "catalog" / "demo.toml")
    parser.add_argument("--corpus", type=Path, default=ROOT / "tests" / "fixtures" / "intents.tsv")
    args = parser.parse_args()
    catalog = read_catalog(args.catalog)
    entries = catalog_entries(catalog.services, catalog.departments)
    corpus = read_corpus(args.corpus)
    misses = [(message, expected, got) for message, expected in corpus
              if (got := intent_of(message, entries)) != expected]
    understood = len(corpus) - len(misses)
    print(f"{understood}/{len(corpus)} understood ({understood / len(corpus):.1%})")
    for message, expected, got in misses:
        print(f"  miss: {message!r}: expected {expected}, got {got}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
