"""Page objects: what a page means, as pure functions of URL, HTML bytes and headers."""
