"""tiercdn's caching-proxy engine: the one cache binary every tier runs.

Edge and regional nodes are this engine with different settings and policies.
"""
