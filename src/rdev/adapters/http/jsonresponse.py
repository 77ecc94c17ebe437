"""The JSON response every route and error answers with. Same bytes as Starlette's, except that
a lone surrogate (in text stored before the edge refused them) becomes U+FFFD instead of
failing the response with a 500."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse as _StarletteJSONResponse

from rdev.domain.text import utf8


class JSONResponse(_StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        text = json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        )
        return utf8(text)
