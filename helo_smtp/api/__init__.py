"""The HTTP send API (SPEC §11): aiohttp on its own listener (``[api]``).

``build`` turns a JSON request into one RFC 5322 message (the email package) plus envelope;
``send`` hands it to the transport-free core (``helo_smtp/submit``) that the SMTP door uses
too, so both doors answer a broken rule with the same ``errorCode``; ``replies`` maps those to
HTTP; ``keys`` checks ``Authorization: Bearer``; ``app`` wires the routes and the listener.
"""
