"""Entry point of the ``fedledger`` command: parses ``<noun> <verb>`` and maps errors to exit codes.

Exit codes: 0 success; 1 a FedLedger error (the message says what and what to do); 2 bad usage;
3 ``network status`` found a node that is not running or not answering; 4 ``audit verify`` found a
check that fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fedledger.cli import audit, company, network, node, task, train
from fedledger.errors import FedLedgerError

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedledger", description=__doc__.splitlines()[0] if __doc__ else None)
    nouns = parser.add_subparsers(dest="noun", required=True, metavar="<noun>")
    network.register(nouns)
    company.register(nouns)
    node.register(nouns)
    task.register(nouns)
    train.register(nouns)
    audit.register(nouns)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except FedLedgerError as err:
        print(f"fedledger: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fedledger: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
