"""A store process: `python -m crawler.store_worker FD` (started by crawler.store_process)."""

import sys

from crawler.store_process import serve

if __name__ == "__main__":
    serve(int(sys.argv[1]))
