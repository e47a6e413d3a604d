"""Benchmarks of helo-smtp against Postfix on the same machine, in the same run.

``bash bench/run.sh`` installs what it needs and writes ``docs/benchmarks.md``; see that file for
what is measured and how. Nothing here is imported by the relay itself.
"""
