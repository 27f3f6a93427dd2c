"""Small shared helpers: contract paths, atomic I/O, devices and CLI flags.

Imported by every package and script; imports nothing of ours but :mod:`common.interrupts`, which makes a
Ctrl-C during a script's start-up (torch's import) one line instead of a traceback.
"""
from common import interrupts as _interrupts

_interrupts.install()
