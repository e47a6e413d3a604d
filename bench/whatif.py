"""Bench-only experiments on helo-smtp, loaded into the relay process before it starts
(``python -m bench --whatif NAME``): a function here patches the relay for one measurement, so
the report can show what a change would gain before it is made properly in ``helo_smtp/``.

None is defined now. The first, ``fast_dkim`` (dkimpy's RSA swapped for OpenSSL's), measured a
1.4x / 1.9x gain in run 1 (``docs/benchmarks-history.md``, row 1b) and then shipped as
``helo_smtp/outbound/dkim.py``; a copy here would only duplicate it.
"""

from __future__ import annotations
