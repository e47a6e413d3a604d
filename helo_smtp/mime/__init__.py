"""Byte-level MIME editing shared by templates (inbound) and tracking (delivery): rewrite the
text parts that must change and keep every other byte of the message as the client sent it."""
