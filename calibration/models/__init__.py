"""Smile models and their calibration: raw SVI (with its inner QP), eSSVI and SABR."""
