"""Lazy iteration over List methods: one generic pager behind every `client.xxx()` list."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

# Fetches one page: page_token -> (items, next_page_token).
PageFetcher = Callable[[str], tuple[list[T], str]]


class Pager(Generic[T]):
    """Iterates every item of a List call, fetching pages only as they are needed.

    Each iteration starts from the first page again. `limit` stops after that many
    items (and fetches no page beyond them); `pages()` yields whole pages.
    """

    def __init__(self, fetch: PageFetcher[T], *, limit: int | None = None) -> None:
        self._fetch = fetch
        self._limit = limit
        self.pages_fetched = 0
        self.next_page_token = ""

    def pages(self) -> Iterator[list[T]]:
        token = ""
        remaining = self._limit
        while True:
            if remaining is not None and remaining <= 0:
                return
            items, token = self._fetch(token)
            self.pages_fetched += 1
            self.next_page_token = token
            if remaining is not None:
                items = items[:remaining]
                remaining -= len(items)
            if items:
                yield items
            if not token:
                return

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page

    def first(self) -> T | None:
        """The first item, or None when the list is empty (fetches one page)."""
        for item in self:
            return item
        return None

    def to_list(self) -> list[T]:
        return list(self)
