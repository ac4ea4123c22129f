"""Zerodha Kite Connect v3 ticker feed."""
