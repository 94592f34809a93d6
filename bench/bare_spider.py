"""The engine's limit: a spider that fetches a list of URLs and does nothing with the pages.

Run with the project's settings, as `scrapy runspider bench/bare_spider.py -a urls=FILE`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy.http import Response


class BareSpider(scrapy.Spider):
    """Fetch every URL of a file (one a line) and drop the responses."""

    name = "bare"

    def __init__(self, urls: str = "", *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.urls_file = Path(urls)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """Yield one request per URL in the file."""
        for line in self.urls_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield scrapy.Request(line.strip(), callback=self.drop)

    def drop(self, response: Response) -> None:
        """Do nothing with a page."""
        return
