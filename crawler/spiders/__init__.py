"""Spiders: one generic spider over source files, and one named spider per source (`scrapy crawl <id>`)."""
