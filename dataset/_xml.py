"""Shared helpers for the annotation readers: a safe XML parser, path containment, atomic writes.

Every annotation file is parsed with entity resolution, DTD loading and network access off, so an
XXE payload (``<!ENTITY x SYSTEM "file:///etc/passwd">``) is never expanded into a record.
"""
from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation, localcontext

from mrcnn.io import fsio


class AnnotationError(ValueError):
    """An annotation file that cannot be used. The message names the file, the problem and the fix."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__("%s: %s" % (path, message))


class PathEscapeError(AnnotationError):
    """A path inside an annotation is absolute or resolves outside the dataset root."""


def xml_parser():
    """lxml parser that never resolves entities, loads DTDs or touches the network."""
    from lxml import etree
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_comments=True)


def parse_xml(path: str):
    """Parse ``path`` safely; returns the root element or raises AnnotationError."""
    from lxml import etree
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AnnotationError(path, "cannot read the file (%s)" % e) from e
    if not data.strip():
        raise AnnotationError(path, "the file is empty; re-export or delete it")
    try:
        root = etree.fromstring(data, parser=xml_parser())
    except etree.XMLSyntaxError as e:
        raise AnnotationError(path, "XML does not parse (%s); re-export the annotation or delete it"
                              % e) from e
    if root is None:
        raise AnnotationError(path, "no XML root element; re-export the annotation")
    return root


def text(el, tag: str, default: str | None = None) -> str | None:
    """Stripped text of the first child ``tag`` of ``el`` (entity references are dropped)."""
    if el is None:
        return default
    child = el.find(tag)
    if child is None:
        return default
    value = _plain_text(child).strip()
    return value if value != "" else default


def _plain_text(el) -> str:
    """Text of ``el`` and its element children; unresolved entity references contribute nothing."""
    parts = [el.text or ""]
    for c in el:
        if isinstance(c.tag, str):
            parts.append(_plain_text(c))
        parts.append(c.tail or "")   # an entity node's own text is "&name;": skipped
    return "".join(parts)


def number(value: str | None, path: str, what: str) -> Decimal:
    """Parse a decimal number from annotation text, raising AnnotationError naming ``what``."""
    if value is None:
        raise AnnotationError(path, "missing %s; add it or re-export the annotation" % what)
    try:
        d = Decimal(value.strip())
    except InvalidOperation:
        raise AnnotationError(path, "%s is not a number: %r" % (what, value)) from None
    if not d.is_finite():
        raise AnnotationError(path, "%s is not finite: %r" % (what, value))
    return d


def exact_add(d: Decimal, delta: int) -> Decimal:
    """``d + delta`` computed exactly (enough precision for any float's decimal repr)."""
    with localcontext() as ctx:
        ctx.prec = 1200
        return d + delta


def fmt_number(d: Decimal) -> str:
    """Decimal as plain text: integers without a point, others in positional notation."""
    if d == d.to_integral_value():
        return str(int(d))
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def to_decimal(x: float) -> Decimal:
    """Exact decimal of the shortest repr of float ``x`` (so float(result) == x)."""
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("box coordinate is not finite: %r" % (x,))
    return Decimal(repr(x))


def resolve_inside(root: str, rel: str, xml_path: str, what: str, base: str | None = None) -> str:
    """Absolute path of ``rel`` (relative to ``base``, default ``root``), which must stay inside ``root``.

    Raises PathEscapeError for absolute paths and ``../`` escapes. The check is lexical (normpath),
    so a symlinked images folder inside the root still works.
    """
    if rel is None or rel.strip() == "":
        raise AnnotationError(xml_path, "empty %s path" % what)
    orig = rel.strip()
    rel = orig.replace("\\", "/")
    if os.path.isabs(rel) or rel.startswith("/") or (len(rel) > 2 and rel[1] == ":" and rel[2] == "/"):
        raise PathEscapeError(xml_path, "%s path '%s' is absolute; annotation paths must be relative to "
                              "the dataset folder %s" % (what, orig, root))
    root_n = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(os.path.abspath(base or root), rel))
    if full != root_n and not full.startswith(root_n + os.sep):
        raise PathEscapeError(xml_path, "%s path '%s' resolves to %s, outside the dataset folder %s; "
                              "fix the path in the annotation" % (what, orig, full, root_n))
    return full


def relative_inside(path: str, root: str, what: str) -> str:
    """``path`` relative to ``root`` with '/' separators; ValueError if it is not inside."""
    root_n = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.abspath(path))
    if not full.startswith(root_n + os.sep):
        raise ValueError("%s %s is not inside the split folder %s" % (what, full, root_n))
    return os.path.relpath(full, root_n).replace(os.sep, "/")


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (mrcnn.io.fsio's implementation); no fsync, so safe
    against a killed process but not a power loss: an fsync per small file made bulk writes
    several times slower."""
    fsio.atomic_write_bytes(path, data, durable=False)
