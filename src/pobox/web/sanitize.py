"""HTML mail made safe to show (docs/webmail.md, "Reading HTML mail").

nh3 (Ammonia) keeps an allow-list of elements, attributes, URL schemes and CSS properties;
everything else goes: script and style elements with their content, event handler attributes,
forms, frames, SVG and MathML, ``javascript:`` and ``data:`` URLs. On top of the allow-list:

* ``cid:`` images become ``data:`` URLs of the message's own inline parts (PNG, JPEG, GIF, WebP
  only), the one place a ``data:`` URL survives;
* remote (http/https) images are dropped unless the reader allowed them for this message; the
  caller learns that some were blocked;
* links open in a new browsing context with ``rel="noopener noreferrer"``;
* CSS is limited to properties that neither load anything nor move content over the page
  (no ``position``, no ``background`` images, no ``content``).

The result is shown in a sandboxed iframe with a CSP of its own (pobox.web.app), so even a
sanitiser bug cannot run script on the webmail's origin.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import unquote

import nh3

TAGS = (set(nh3.ALLOWED_TAGS) - {"area", "map", "nav"}) | {"font", "center"}
ATTRIBUTES: dict[str, set[str]] = {
    "*": {"title", "lang", "dir", "style", "align", "valign", "width", "height"},
    "a": {"href"},
    "img": {"src", "alt", "border"},
    "table": {"border", "cellpadding", "cellspacing", "bgcolor"},
    "td": {"colspan", "rowspan", "bgcolor", "nowrap"},
    "th": {"colspan", "rowspan", "bgcolor", "nowrap"},
    "tr": {"bgcolor"},
    "font": {"color", "face", "size"},
    "ol": {"start", "type"},
    "li": {"value"},
    "col": {"span"},
    "colgroup": {"span"},
}
#: CSS properties kept in style attributes: none loads a URL or lifts content out of its box.
STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "font-variant", "line-height", "letter-spacing", "word-spacing",
    "text-align", "text-decoration", "text-indent", "text-transform", "white-space",
    "vertical-align", "direction", "margin", "margin-top", "margin-right", "margin-bottom",
    "margin-left", "padding", "padding-top", "padding-right", "padding-bottom",
    "padding-left", "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width", "border-collapse", "border-spacing",
    "border-radius", "width", "height", "max-width", "min-width", "max-height", "min-height",
    "display", "list-style-type", "table-layout", "float", "clear",
}  # fmt: skip
LINK_SCHEMES = {"http", "https", "mailto", "cid"}
#: Elements removed with everything inside them.
DROPPED = {"script", "style", "title", "head", "template", "noscript", "object", "embed",
           "iframe", "frame", "frameset", "svg", "math", "form", "textarea", "select", "button",
           "applet", "audio", "video", "canvas"}  # fmt: skip


class Sanitised:
    __slots__ = ("blocked", "html")

    def __init__(self, html: str, blocked: int) -> None:
        self.html = html
        self.blocked = blocked  # remote images left out


def sanitise(
    html: str, *, inline: Mapping[str, tuple[str, bytes]] | None = None, remote: bool = False
) -> Sanitised:
    """*html* cleaned; *inline* maps Content-IDs to (type, content) for ``cid:`` images;
    *remote*: keep http/https images."""
    images = inline or {}
    blocked = 0

    def attribute(tag: str, attr: str, value: str) -> str | None:
        nonlocal blocked
        if attr == "src" or (attr == "href" and tag != "a"):
            if tag != "img":
                return None
            low = value.strip().lower()
            if low.startswith("cid:"):
                image = images.get(unquote(value.strip()[4:]).strip("<>"))
                if image is None:
                    return None
                return f"data:{image[0]};base64,{base64.b64encode(image[1]).decode('ascii')}"
            if low.startswith(("http://", "https://")):
                if remote:
                    return value.strip()
                blocked += 1
                return None
            return None
        if tag == "a" and attr == "href" and value.strip().lower().startswith("cid:"):
            return None
        return value

    cleaned = nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=DROPPED,
        attributes=ATTRIBUTES,
        attribute_filter=attribute,
        url_schemes=LINK_SCHEMES,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=STYLE_PROPERTIES,
        strip_comments=True,
    )
    return Sanitised(cleaned, blocked)
