"""Dhan v2 live market feed: wire layouts, decoding into ticks, connections."""
