"""The engine: decide (pure), fetch (fill table and fill task), drive (the handler)."""
