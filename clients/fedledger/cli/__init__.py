"""The ``fedledger`` command line: ``fedledger <noun> <verb>``; only this package prints or exits."""
