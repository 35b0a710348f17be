"""Options every command group shares: which network (``--home``), as whom (``--as``), ``--json``."""

from __future__ import annotations

import argparse
from pathlib import Path

from fedledger.network import default_home


def add_common(parser: argparse.ArgumentParser, *, identity: bool = False, json: bool = True) -> None:
    """Add ``--home`` (and ``--as``, ``--json``) to a verb's parser."""
    parser.add_argument("--home", type=Path, default=None,
                        help="where the network's state, ledgers, keys and logs live "
                             "(default $FEDLEDGER_HOME or ~/.fedledger)")
    if identity:
        parser.add_argument("--as", dest="identity", default="coordinator", help="the wallet identity to act as")
    if json:
        parser.add_argument("--json", action="store_true", help="print one JSON document")


def home_of(args: argparse.Namespace) -> Path:
    """The network home the command acts on."""
    return Path(args.home).resolve() if args.home else default_home()
