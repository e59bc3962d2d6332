"""The touchscreen till: a Kivy front end on top of the terminal core's `Till`.

It holds no payment logic: every decision (online/offline, limits, purse,
journal) is the core's. This package only turns key presses into `Till` calls
on a worker thread and shows the results, big enough to read from a metre away.
Run it with `python -m hcard.terminal.app`.
"""
