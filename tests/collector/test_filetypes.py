"""The file type of a transfer from its URL and content type (collector/filetypes.py), worked out by hand."""

from __future__ import annotations

import pytest

from collector.filetypes import MIME_EXTENSIONS, file_ext


@pytest.mark.parametrize(("url", "content_type", "ext"), [
    ("http://dl.example.net/tools/Setup.exe", "application/x-msdownload", "exe"),
    ("http://dl.example.net/tools/Setup.EXE?x=1#top", None, "exe"),
    ("/dl/ChromeSetup.exe?x=1", None, "exe"),  # a request target on the wire
    ("http://dl.example.net/download.php?id=3", "application/x-msdownload", "exe"),  # the server's word wins
    ("http://dl.example.net/download.php?id=3", "text/html", "php"),  # a page: the name is all there is
    ("http://dl.example.net/get?file=Setup.exe", "application/octet-stream", None),  # a query names no file
    ("http://dl.example.net/office.msi", "application/x-msdownload", "msi"),  # a package name stays
    ("http://dl.example.net/pkg", "Application/X-MSI; charset=binary", "msi"),
    ("http://apps.example/app.apk", "application/vnd.android.package-archive", "apk"),
    ("http://apps.example/latest", "application/vnd.android.package-archive", "apk"),
    ("http://mac.example/Zoom", "application/x-apple-diskimage", "dmg"),
    ("http://deb.example/pool/x", "application/vnd.debian.binary-package", "deb"),
    ("http://deb.example/pool/x", "application/x-debian-package", "deb"),
    ("http://rpm.example/x", "application/x-rpm", "rpm"),
    ("http://ms.example/x", "application/vnd.microsoft.portable-executable", "exe"),
    ("http://sh.example/install", "application/x-sh", "sh"),
    ("http://www.bbc.co.uk/news/education", "text/html", None),  # an HTML page
    ("http://www.bbc.co.uk/", "text/html", None),
    ("http://www.bbc.co.uk/index.html", "text/html", "html"),
    ("http://files.example/a/b.tar.gz", None, "gz"),
    ("http://files.example/.htaccess", None, None),  # a dot file has no extension
    ("http://files.example/notes.", None, None),
])
def test_file_types(url, content_type, ext):
    assert file_ext(url, content_type) == ext


@pytest.mark.parametrize("url", [
    "http://dl.example.net/" + "a" * 100_000 + ".exe",  # a name no file system would take
    "http://dl.example.net/" + "/" * 50_000 + "x",
    "http://dl.example.net/Setup.ex%00e",
    "http://dl.example.net/Setup%00",
    "http://dl.example.net/Setup.exe%00",
    "http://dl.example.net",  # no path
    "http://dl.example.net?file=a.exe",
    "www.example.com:443",  # a CONNECT
    "download.example.com",  # a bare host: the .com is not a file
    "error:invalid-request",
    "http://[::1/x",  # what urlsplit refuses
    "",
    None,
    "http://dl.example.net/Setup.\uff45\uff58\uff45",  # full-width letters are not an extension
    "http://dl.example.net/a.exe\n",
])
def test_hostile_urls_name_no_file_and_raise_nothing(url):
    assert file_ext(url, None) is None


def test_a_long_but_possible_name_keeps_its_extension():
    assert file_ext("http://dl.example.net/" + "a" * 251 + ".exe", None) == "exe"  # 255 characters
    assert file_ext("http://dl.example.net/" + "a" * 252 + ".exe", None) is None


def test_the_table_gives_lower_case_extensions_of_executables_and_packages():
    assert set(MIME_EXTENSIONS.values()) == {"exe", "msi", "appx", "msix", "appxbundle", "msixbundle", "apk", "dmg",
                                             "pkg", "deb", "rpm", "sh", "jar"}
    assert all(k == k.lower() and "/" in k for k in MIME_EXTENSIONS)
