"""Local replay of the monitored government sites, for tests and benchmarks.

`ReplayServer` serves each site under `http://127.0.0.1:<port>/<site_id>`, with pages built
like the real site's and the seed page as one of the posts. See README.md in this folder.
"""

from replay.server import ReplayServer, RequestRecord

__all__ = ["ReplayServer", "RequestRecord"]
