"""The type of file an HTTP transfer carries, as an extension (`exe`, `msi`, `apk`): from the name at the end
of the URL's path and from the response's content type.

One pure function, `file_ext`, serves every input that carries a URL or a content type: the wire decoder
(collector/packet/http.py, compiled with it), the Squid, e2guardian and squidGuard parsers, Suricata's
EVE and the tshark decoder. The vectorised Squid parser (collector/logs/squid_batch.py) applies the same
rule: the name's extension with polars expressions (with `PACKAGE_NAMES` and `MAX_NAME`), the content
type's with `content_extension` once for each distinct type; its tests hold it to what this module gives,
line for line.

The rule:
- the name is the URL's last path segment, query and fragment left out, as written (percent-escapes are
  not decoded: `Setup.exe%00.jpg` names a `jpg`, `a.ex%00e` nothing). Only an absolute URL
  (`scheme://authority/path`) or a path (`/path`) has one; a CONNECT's `host:port`, Squid's `error:…`
  pseudo-URLs and a URL without a path name no file. A name longer than 255 characters (the file
  systems' limit) or starting with a dot (`.htaccess`) has no extension; an extension is 1 to 10 ASCII
  letters and digits after the last dot, given in lower case;
- a content type in `MIME_EXTENSIONS` (executables, installers, packages, disk images, scripts) gives its
  extension, parameters (`; charset=…`) and case ignored;
- where both give one and they differ, the content type wins, unless the name is itself a program's or
  package's (`PACKAGE_NAMES`: an `.msi` served as `application/x-msdownload` stays `msi`): a server's
  `download.php?id=3` that answers with an executable is an executable. Any name keeps its extension
  when the content type says nothing the table knows (`setup.exe` as `application/octet-stream` is
  `exe`; `index.html` is `html`), so the extension is what the request named or, better, what the
  server said it sent.
"""

from __future__ import annotations

from typing import Final

MIME_EXTENSIONS: Final[dict[str, str]] = {
    # Windows executables: IANA registers vnd.microsoft.portable-executable; x-msdownload is what IIS and
    # most servers send for .exe; shared-mime-info calls it x-ms-dos-executable, Debian's mime.types
    # x-msdos-program, libmagic (`file --mime-type`) x-dosexec.
    "application/vnd.microsoft.portable-executable": "exe",
    "application/x-msdownload": "exe",
    "application/x-ms-dos-executable": "exe",
    "application/x-msdos-program": "exe",
    "application/x-dosexec": "exe",
    # Windows Installer: x-msi in shared-mime-info and Debian's mime.types; x-ms-installer in use as well.
    "application/x-msi": "msi",
    "application/x-ms-installer": "msi",
    # Windows app packages: the types Microsoft's App Installer documentation asks servers to send.
    "application/appx": "appx",
    "application/msix": "msix",
    "application/appxbundle": "appxbundle",
    "application/msixbundle": "msixbundle",
    # Android: IANA and shared-mime-info.
    "application/vnd.android.package-archive": "apk",
    # macOS: disk images (shared-mime-info, Debian), installer packages (xar archives in shared-mime-info;
    # IANA's vnd.apple.installer+xml, `pkg` in Debian's mime.types).
    "application/x-apple-diskimage": "dmg",
    "application/x-xar": "pkg",
    "application/vnd.apple.installer+xml": "pkg",
    # Linux packages: IANA's vnd.debian.binary-package and its older names in shared-mime-info; RPM.
    "application/vnd.debian.binary-package": "deb",
    "application/x-debian-package": "deb",
    "application/x-deb": "deb",
    "application/x-rpm": "rpm",
    "application/x-redhat-package-manager": "rpm",
    # Shell scripts (shared-mime-info's x-shellscript and its aliases) and Java archives (IANA).
    "application/x-sh": "sh",
    "application/x-shellscript": "sh",
    "text/x-sh": "sh",
    "application/java-archive": "jar",
    "application/x-java-archive": "jar",
}
"""Content types that say which kind of program or package a response carries, and its extension."""

PACKAGE_NAMES: Final[frozenset[str]] = frozenset({*MIME_EXTENSIONS.values(), "com", "bat", "dll", "udeb", "mpkg"})
"""Extensions of the files those types are sent for (with the others Debian's mime.types gives them): a
name with one of these keeps it whatever such a type says."""

MAX_NAME: Final = 255
"""The longest name that has an extension."""
_LONGEST_EXTENSION: Final = 10


def file_ext(url: str | None, content_type: str | None) -> str | None:
    """The extension of the file a request named and a response carried, by the rule above."""
    named = url_extension(url)
    sent = content_extension(content_type)
    if sent is None or named in PACKAGE_NAMES:
        return named
    return sent


def content_extension(content_type: str | None) -> str | None:
    """The extension `MIME_EXTENSIONS` gives a content type (parameters and case ignored), if any."""
    if not content_type:
        return None
    return MIME_EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower())


def url_extension(url: str | None) -> str | None:
    """The lower-case extension of the name at the end of a URL's path, if it has one."""
    name = _last_segment(url or "")
    if name is None or len(name) > MAX_NAME or name.startswith("."):
        return None
    _, dot, ext = name.rpartition(".")
    if not dot or not 0 < len(ext) <= _LONGEST_EXTENSION or not (ext.isascii() and ext.isalnum()):
        return None
    return ext.lower()


def _last_segment(url: str) -> str | None:
    """The last segment of the path of an absolute URL (`scheme://authority/path`) or of a path (`/path`),
    query and fragment left out; None for anything else (a CONNECT's `host:port`, a URL with no path)."""
    if url.startswith("/"):
        path = url
    else:
        sep = url.find("://")
        if sep < 0 or _first_of(url[:sep], "/?#") >= 0:
            return None
        rest = url[sep + 3 :]
        start = _first_of(rest, "/?#")
        if start < 0 or rest[start] != "/":
            return None
        path = rest[start:]
    end = _first_of(path, "?#")
    if end >= 0:
        path = path[:end]
    return path[path.rfind("/") + 1 :]


def _first_of(text: str, chars: str) -> int:
    """The index of the first of `chars` in `text`, or -1."""
    found = [i for i in (text.find(c) for c in chars) if i >= 0]
    return min(found) if found else -1
