"""What-if for section 5: bgjobs' operator, unchanged, but with kopf's default initial
listing (``settings.watching.chunk_size = None``: every object in one response) instead of
the shipped pages of ``bgjobs_operator.main.LISTING_PAGE_SIZE``. The bench measures what
the paging saves. Run: ``python -m bench.chunked_operator`` with the operator's usual
environment."""

from __future__ import annotations

from typing import Any

import kopf

from bgjobs_operator.main import LISTING_PAGE_SIZE, main

CHUNK_SIZE = LISTING_PAGE_SIZE  # what the shipped operator uses, for the report


@kopf.on.startup()
def unpaged_initial_listing(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.chunk_size = None


if __name__ == "__main__":
    main()
