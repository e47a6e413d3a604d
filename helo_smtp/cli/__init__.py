"""The management CLI (``helo-smtp``): one module a noun; the group is in ``main``."""
