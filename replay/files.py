"""Small but well-formed attachment files (PDF, DOCX, XLSX, ...) served for `/attachment/...`."""

from __future__ import annotations

import io
import zipfile
from xml.sax.saxutils import escape


def _pdf(text: str) -> bytes:
    """Return a one-page PDF; non-ASCII text is left out (no embedded CJK font)."""
    line = "".join(c for c in text if 32 <= ord(c) < 127).replace("(", "").replace(")", "")
    stream = f"BT /F1 12 Tf 72 720 Td ({line or 'attachment'}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
            b" /Resources << /Font << /F1 5 0 R >> >> >>"
        ),
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def _zip(members: dict[str, str]) -> bytes:
    """Return a ZIP archive of the given text members."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def _docx(text: str) -> bytes:
    """Return a minimal Word document holding `text`."""
    word = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    rels = "http://schemas.openxmlformats.org/package/2006/relationships"
    doc_type = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
    return _zip(
        {
            "[Content_Types].xml": (
                '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
                '.org/package/2006/content-types"><Default Extension="rels" ContentType="application'
                '/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
                'ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType'
                '="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"'
                "/></Types>"
            ),
            "_rels/.rels": (
                f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{rels}"><Relationship '
                f'Id="rId1" Type="{doc_type}" Target="word/document.xml"/></Relationships>'
            ),
            "word/document.xml": (
                f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{word}"><w:body><w:p>'
                f"<w:r><w:t>{escape(text)}</w:t></w:r></w:p></w:body></w:document>"
            ),
        }
    )


def _xlsx(text: str) -> bytes:
    """Return a minimal workbook whose first cell holds `text`."""
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    return _zip(
        {
            "[Content_Types].xml": (
                '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
                '.org/package/2006/content-types"><Default Extension="rels" ContentType="application'
                '/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
                'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType='
                '"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
                '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
                'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
            ),
            "_rels/.rels": (
                f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg}"><Relationship '
                f'Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
            ),
            "xl/workbook.xml": (
                f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{main}" xmlns:r="{rel}">'
                '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
            ),
            "xl/_rels/workbook.xml.rels": (
                f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg}"><Relationship '
                f'Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
            ),
            "xl/worksheets/sheet1.xml": (
                f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{main}"><sheetData>'
                f'<row r="1"><c r="A1" t="inlineStr"><is><t>{escape(text)}</t></is></c></row>'
                "</sheetData></worksheet>"
            ),
        }
    )


def attachment_bytes(ext: str, text: str) -> bytes:
    """Return the bytes of a small file of type `ext` that mentions `text`."""
    if ext == "pdf":
        return _pdf(text)
    if ext == "docx":
        return _docx(text)
    if ext == "xlsx":
        return _xlsx(text)
    if ext == "zip":
        return _zip({"readme.txt": text})
    # doc, xls, wps, ofd: old or proprietary formats; an OLE-like header is enough here.
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + text.encode("utf-8")
