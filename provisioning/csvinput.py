"""CSV at the boundary: reading files as people really have them (Excel and LibreOffice exports),
and cells that are safe to open in a spreadsheet.

Encodings: UTF-8 (with or without BOM), UTF-16 (with BOM, Excel's "Unicode text") and
Windows-1258; delimiters: comma, semicolon or tab; headers in Vietnamese or English, matched
without regard to case, spacing or diacritics. Every value comes back stripped and in NFC.
"""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from anyascii import anyascii

from provisioning.errors import InvalidInput

DELIMITERS = (",", ";", "\t")


def safe_cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (a leading = + - @ gets a quote)."""
    text = "" if value is None else ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def decode_bytes(data: bytes, name: str = "file") -> tuple[str, str]:
    """(text, encoding name) of a CSV file's bytes.

    :raises InvalidInput: the bytes are in none of the supported encodings.
    """
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise InvalidInput(name, None, "starts like UTF-16 but is not valid UTF-16",
                               "save it again as CSV UTF-8") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1258"), "windows-1258"
    except UnicodeDecodeError:
        raise InvalidInput(name, None, "is neither UTF-8, UTF-16 nor Windows-1258 text",
                           "in Excel use Save As > CSV UTF-8") from None


def fold_header(text: str) -> str:
    """'  Họ và Tên ' -> 'ho va ten' (for matching headers)."""
    text = unicodedata.normalize("NFC", text).replace("đ", "d").replace("Đ", "D")
    return " ".join(anyascii(text).lower().replace("_", " ").split())


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_rows(
    text: str, headers: Mapping[str, Sequence[str]], *, required: Sequence[str] = (), name: str = "file",
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, {field: value})`` for each non-empty data row.

    ``headers`` maps each field to the header spellings it accepts. Columns with other headers are
    ignored.

    :raises InvalidInput: no header row, a required column missing, or two columns for one field.
    """
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InvalidInput(name, None, "has no header row", "the first line must name the columns")
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(lines[0]))
    header = next(reader)
    lookup = {fold_header(alias): key for key, aliases in headers.items() for alias in aliases}
    columns: dict[int, str] = {}
    for index, title in enumerate(header):
        key = lookup.get(fold_header(title))
        if key is None:
            continue
        if key in columns.values():
            raise InvalidInput(name, None, f"has two columns for {key!r} (second: {title.strip()!r})",
                               "keep one of them")
        columns[index] = key
    missing = [k for k in required if k not in columns.values()]
    if missing:
        expected = "; ".join(f"{k}: {' / '.join(headers[k][:3])}" for k in missing)
        found = ", ".join(repr(h.strip()) for h in header)
        raise InvalidInput(name, None, f"has no column for {', '.join(missing)}",
                           f"expected a header like {expected}; found {found}")
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        values = {key: unicodedata.normalize("NFC", row[i]).strip() if i < len(row) else ""
                  for i, key in columns.items()}
        yield reader.line_num, values


def read_rows(
    path: Path, headers: Mapping[str, Sequence[str]], *, required: Sequence[str] = (),
) -> list[tuple[int, dict[str, str]]]:
    """All rows of the CSV file at ``path`` (see :func:`parse_rows`)."""
    text, _ = decode_bytes(path.read_bytes(), path.name)
    return list(parse_rows(text, headers, required=required, name=path.name))
