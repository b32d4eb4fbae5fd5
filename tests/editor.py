"""What editors send as a prompt: the last characters before the cursor, cut at a line start
(Continue, Twinny and others trim from the top), shared by the typeahead tests and the bench."""

from __future__ import annotations


def editor_window(text: str, chars: int) -> str:
    """The last `chars` characters of `text`, from the first line start in them."""
    if len(text) <= chars:
        return text
    cut = text[-chars:]
    nl = cut.find("\n")
    return cut[nl + 1 :] if nl >= 0 else cut
