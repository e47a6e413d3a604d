"""The HTTP side (aiohttp): open pixel, click redirect, one-click unsubscribe, /metrics."""
