"""Vocabularies: string <-> id tables, saved as JSON lists."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

PAD, UNK = "<pad>", "<unk>"


class Vocab:
    """An ordered list of items; with ``specials`` the ids 0 and 1 are padding and unknown."""

    def __init__(self, items: Sequence[str], specials: bool = True):
        self.specials = specials
        self.items = list(items)
        if specials and self.items[:2] != [PAD, UNK]:
            self.items = [PAD, UNK] + [i for i in self.items if i not in (PAD, UNK)]
        self.index = {item: i for i, item in enumerate(self.items)}
        if len(self.index) != len(self.items):
            raise ValueError("vocabulary items are not unique")

    @classmethod
    def build(cls, counts: Counter[str], min_count: int = 1, extra: Iterable[str] = ()) -> "Vocab":
        """Items seen at least ``min_count`` times (most frequent first), then ``extra``."""
        items = [item for item, n in counts.most_common() if n >= min_count]
        seen = set(items)
        items += [item for item in extra if item not in seen and not seen.add(item)]  # type: ignore[func-returns-value]
        return cls(items)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: str) -> bool:
        return item in self.index

    def id(self, item: str) -> int:
        """The item's id; the unknown id (1) for unseen items when the vocab has specials."""
        found = self.index.get(item)
        if found is None:
            if not self.specials:
                raise KeyError(item)
            return 1
        return found

    def ids(self, items: Iterable[str]) -> list[int]:
        return [self.id(item) for item in items]
