"""Small shared helpers: contract paths, atomic I/O, devices and CLI flags.

Imported by every package and script; imports nothing of ours.
"""
