"""Options every command group shares: which network (``--home``), as whom (``--as``/``--party-home``), ``--json``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from fedledger.network import default_home

if TYPE_CHECKING:
    from fedledger.fl.party import PartyHome


def add_common(parser: argparse.ArgumentParser, *, identity: bool = False, json: bool = True) -> None:
    """Add ``--home`` (and ``--as``, ``--json``) to a verb's parser."""
    parser.add_argument("--home", type=Path, default=None,
                        help="where the network's state, ledgers, keys and logs live "
                             "(default $FEDLEDGER_HOME or ~/.fedledger)")
    if identity:
        parser.add_argument("--as", dest="identity", default="coordinator",
                            help="the party to act as, from its home <home>/parties/NAME (the one-machine demo)")
        parser.add_argument("--party-home", type=Path, default=None,
                            help="the acting party's own home (instead of --as), e.g. on a company's own machine")
    if json:
        parser.add_argument("--json", action="store_true", help="print one JSON document")


def home_of(args: argparse.Namespace) -> Path:
    """The network home the command acts on."""
    return Path(args.home).resolve() if args.home else default_home()


def party_of(args: argparse.Namespace) -> PartyHome:
    """The acting party's own home: ``--party-home``, or the demo's ``<home>/parties/<--as>``."""
    from fedledger.fl.party import PartyHome

    if args.party_home:
        return PartyHome(args.party_home)
    return PartyHome(home_of(args) / "parties" / args.identity)
