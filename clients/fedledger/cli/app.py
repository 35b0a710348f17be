"""Entry point of the ``fedledger`` command: parses ``<noun> <verb>`` and maps errors to exit codes.

Exit codes: 0 success; 1 a FedLedger error (the message says what and what to do), or a file or
directory the command could not use; 2 bad usage; 3 ``network status`` found a node that is not
running or not answering; 4 ``audit verify`` found a check that fails; 70 an error FedLedger did not
expect (a bug: one line, and the traceback with ``FEDLEDGER_TRACEBACK=1``).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from fedledger.cli import audit, company, network, node, task, train
from fedledger.errors import FedLedgerError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BUG = 70  # sysexits' EX_SOFTWARE


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
    except OSError as err:
        # A path the command was given, or one under its home, that it could not use (missing, a
        # directory, a file where a directory belongs, no permission): bad input, said in one line.
        where = f"{err.filename}: " if err.filename else ""
        print(f"fedledger: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:  # the last resort: a user never sees a traceback
        if os.environ.get("FEDLEDGER_TRACEBACK"):
            traceback.print_exc()
        print(f"fedledger: unexpected {type(err).__name__}: {err}; this is a bug in FedLedger, please report it "
              f"(set FEDLEDGER_TRACEBACK=1 to see where it happened)", file=sys.stderr)
        return EXIT_BUG
    return code


if __name__ == "__main__":
    sys.exit(main())
