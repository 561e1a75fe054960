"""Just enough of a Debian archive client to fetch the arm64 kernel package.

Why not `apt-get download`: that needs `dpkg --add-architecture arm64` on the
host (a global change a test harness has no business making). debootstrap has
already fetched the suite's Packages index for arm64 and checked it against the
signed Release file, so we read the kernel's file name and SHA256 from that
index and verify the download against it: the same trust chain apt uses.
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

from gem.files import sha256_file
from harness.errors import HarnessError

DEFAULT_MIRROR = "http://deb.debian.org/debian"


class DebianFetchError(HarnessError):
    """A package could not be found in the index or downloaded intact."""


def parse_packages(text: str) -> dict[str, dict[str, str]]:
    """Packages index (deb822 stanzas) -> {package name: fields}.

    Continuation lines are folded into their field; when a name appears twice
    the later stanza wins (indexes list one version per suite anyway).
    """
    out: dict[str, dict[str, str]] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        last = None
        for line in stanza.splitlines():
            if not line.strip():
                continue
            if line[0] in " \t" and last:
                fields[last] += "\n" + line.strip()
                continue
            key, sep, value = line.partition(":")
            if not sep:
                continue
            last = key.strip()
            fields[last] = value.strip()
        if "Package" in fields:
            out[fields["Package"]] = fields
    return out


def resolve_metapackage(index: dict[str, dict[str, str]], name: str) -> dict[str, str]:
    """Follow a metapackage such as linux-image-cloud-arm64 to the package that
    holds the files (its first linux-image-* dependency)."""
    if name not in index:
        raise DebianFetchError(f"package {name!r} is not in the arm64 Packages index; check "
                               "kernel_package in firmware/qemu/recipe.toml")
    fields = index[name]
    for _ in range(4):
        if fields.get("Filename") and "Depends" in fields:
            deps = [d.strip().split(" ")[0] for d in fields["Depends"].split(",")]
            image_deps = [d for d in deps if d.startswith("linux-image-") and d in index]
            if image_deps:
                fields = index[image_deps[0]]
                continue
        break
    return fields


def fetch_deb(fields: dict[str, str], mirror: str, dest_dir: Path) -> Path:
    """Download the package described by fields into dest_dir, verified by SHA256.

    A file already there with the right hash is reused (re-runs are cheap).
    """
    filename = fields.get("Filename")
    want = fields.get("SHA256", "").lower()
    if not filename or len(want) != 64:
        raise DebianFetchError(f"index entry for {fields.get('Package')!r} has no Filename/SHA256")
    dest = dest_dir / Path(filename).name
    if dest.is_file() and sha256_file(dest) == want:
        return dest
    url = mirror.rstrip("/") + "/" + filename
    if not url.startswith(("http://", "https://")):
        raise DebianFetchError(f"refusing mirror URL {url!r}: only http(s) mirrors are used")
    part = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as f:  # noqa: S310
            shutil.copyfileobj(resp, f, 1 << 20)
    except OSError as exc:
        raise DebianFetchError(f"cannot download {url}: {exc}; check the network or set "
                               "GEM_HIL_DEBIAN_MIRROR to a reachable Debian mirror") from None
    got = sha256_file(part)
    if got != want:
        part.unlink(missing_ok=True)
        raise DebianFetchError(f"{url} arrived corrupted: sha256 {got} != index {want}")
    part.rename(dest)
    return dest
