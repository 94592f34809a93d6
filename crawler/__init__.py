"""Scrapy project: sources from `seeds/`, page extraction, items and storage pipelines.

This package never imports `monitor`; `scrapy crawl <source>` works on its own.
"""
