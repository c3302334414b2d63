"""The mosaic engine: tile pool, descriptors, assignment, temporal coherence, rendering."""
