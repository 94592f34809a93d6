"""`python -m replay --port 8800 [--size N] [--sites kaiping,...]`: serve in the foreground."""

from __future__ import annotations

import argparse
import sys

from replay.server import ReplayServer
from replay.sites import site_class, site_ids


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the parsed command line."""
    known = site_ids()
    parser = argparse.ArgumentParser(
        prog="python -m replay",
        description="Serve local replays of the monitored sites.",
        epilog="sites: " + "; ".join(f"{i}: {site_class(i).__doc__}" for i in known),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8800, help="0 picks a free port")
    parser.add_argument("--size", type=int, default=None, help="posts per column")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated posts")
    parser.add_argument("--sites", default=",".join(known), help="comma-separated site ids")
    parser.add_argument("--verbose", action="store_true", help="print an access log")
    parser.add_argument("--bulk", type=int, default=0, help="also serve bulk0001..bulkNNNN")
    parser.add_argument("--bulk-size", type=int, default=1, help="posts per bulk source")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the replay until interrupted; return the exit status."""
    args = parse_args(argv)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    try:
        server = ReplayServer(
            sites,
            args.host,
            args.port,
            args.size,
            args.seed,
            args.verbose,
            args.bulk,
            args.bulk_size,
        )
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    server.start()
    print(server.url, flush=True)
    for site_id, info in server.describe().items():
        print(f"  {site_id}: {info['list_url']} ({info['posts']} posts)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
