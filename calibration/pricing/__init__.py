"""Pricing primitives: undiscounted Black-76 and greeks, implied volatility, inverse-option
conventions, and forwards and times to expiry."""
