"""tiercdn's origin: serves a library of MPEG-DASH titles from disk and packages them.

``library`` (paths, listing, content types; no HTTP), ``app`` (the aiohttp
adapter), ``packager`` (ffmpeg), ``settings`` and the ``tiercdn-origin`` CLI.
"""
