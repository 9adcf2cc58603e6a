"""Upgrade a results store to the newest schema: python -m malhug.service.store.migrations URL"""
from __future__ import annotations

import argparse
import sys

from ..db import make_engine, safe_url
from . import current, head, upgrade


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m malhug.service.store.migrations",
                                     description="Bring a malhug results store to the newest schema.")
    parser.add_argument("url", help="SQLAlchemy URL, e.g. sqlite:///store.sqlite or postgresql+psycopg://...")
    parser.add_argument("--check", action="store_true", help="only tell whether an upgrade is needed")
    args = parser.parse_args(argv)
    engine = make_engine(args.url)
    try:
        before = current(engine)
        if args.check:
            print(f"{safe_url(args.url)}: at {before or 'nothing'}, newest {head()}")
            return 0 if before == head() else 1
        upgrade(engine)
        print(f"{safe_url(args.url)}: {before or 'empty'} -> {current(engine)}")
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
