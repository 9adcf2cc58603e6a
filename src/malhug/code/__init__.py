"""The code engine: one analysis for everything malhug lowers to Python.

- `fold`: safe partial evaluation of pure functions on constants (deobfuscation)
- `patterns`: YARA-X rules over raw bytes and decoded strings
- `interpret`: abstract interpretation with taint, from sources to sinks
- `behaviours`: sink events and their taint, classified into what the payload would do
"""
