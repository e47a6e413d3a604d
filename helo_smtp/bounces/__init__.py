"""The return path (SPEC §13): VERP addresses for outbound mail, and the intake of what comes
back to them: delivery status notifications (RFC 3464), bounces in free text, and spam
complaints in the Abuse Reporting Format (RFC 5965)."""
