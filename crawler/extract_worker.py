"""An extraction worker: `python -m crawler.extract_worker FD` (started by crawler.extract_pool)."""

import sys

from crawler.extract_pool import serve

if __name__ == "__main__":
    serve(int(sys.argv[1]))
