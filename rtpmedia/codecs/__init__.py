"""Codec registry of the media plane (one module per codec, to come)."""
