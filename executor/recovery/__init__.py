"""Recovery: the restart rebuild (``rebuild``) and reconciliation with the venue
(``Reconciler``). Both work through the account's Ledger (executor/ledger.py) and the
engine's ``resolve`` callback, never through the Engine itself: no import circle."""
