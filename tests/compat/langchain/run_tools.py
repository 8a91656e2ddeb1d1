"""Runs LangChain's Anchor Browser content and screenshot tools, unchanged,
against the server named by ANCHORBROWSER_BASE_URL (with the key in
ANCHORBROWSER_API_KEY), and prints what they gave back as one JSON line:
the content tool's text (Markdown) and the screenshot tool's picture size.
Run by tests/compat/test_langchain.py with the virtual environment that
holds langchain-anchorbrowser and the SDK it pins."""

import json
import struct
import sys

from langchain_anchorbrowser import AnchorContentTool, AnchorScreenshotTool

url = sys.argv[1]
content = AnchorContentTool().invoke({"url": url, "format": "markdown"})
text = content if isinstance(content, str) else getattr(content, "text", str(content))
picture = AnchorScreenshotTool().invoke({"url": url, "width": 800, "height": 600})
# The tool hands the PNG back as text (decoded bytes); its header gives the size.
raw = picture.encode("latin-1", errors="replace") if isinstance(picture, str) else bytes(picture)
start = raw.find(b"IHDR")
size = list(struct.unpack(">II", raw[start + 4:start + 12])) if start >= 0 else None
print(json.dumps({"markdown": text, "png_size": size, "png_type": type(picture).__name__}))
