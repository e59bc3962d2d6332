"""A deterministic simulation of the whole system in one process, from one seed.

A real server (the FastAPI app on a real SQLite file), real tills (`TerminalTill` with its
journal, payments, sync agent and snapshot) and in-process NTAG215 cards (the chip model
behind the real `TagSession`) run on one simulated clock, talking through a simulated
network that drops, duplicates, delays and reorders requests and loses answers. The server
restarts mid-commit and is restored from its backups, tills crash at any step and start
again from their files, cards are torn away after any command. After every step and at
the end the invariants of `checks` must hold. docs/simulation.md says how to run it.
"""
