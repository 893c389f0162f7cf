"""Showing text that came from people (the directory, admins) literally, never as markdown.

Streamlit renders markdown in ``st.markdown``/``st.write``, in headings, alerts,
captions and widget labels: a display name such as ``[Pay here](https://…)`` or
``![](https://tracker/…)`` would become a link or make the reader's browser
fetch an image. Every such text goes through :func:`plain` (or ``st.text``).
"""

from __future__ import annotations

import re

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping
# them all also defuses Streamlit's own syntax (``:red[…]``, ``:material/x:``,
# ``$math$``) and raw HTML (``<img …>``).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=\"'^%@/,;?])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# Streamlit turns bare URLs and e-mail addresses into links even when their
# punctuation is escaped (GFM autolinks): an invisible word joiner inside
# the scheme, after "www" and after "@" keeps them text.
_AUTOLINK = re.compile(r"(?i)\b(?:https?|ftp|mailto|www|xmpp)|@")
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """``text`` escaped so that any Streamlit markdown element shows it exactly as written.

    Line breaks become spaces (a name is one line; a newline could start a
    heading or a list); URLs and e-mail addresses get an invisible word
    joiner (``WORD_JOINER``) so they are not turned into links. Not for
    ``st.text``, ``st.code`` or dataframe cells, which never render markdown.
    """
    one_line = _LINE_BREAKS.sub(" ", str(text))
    unlinked = _AUTOLINK.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], one_line)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", unlinked)
