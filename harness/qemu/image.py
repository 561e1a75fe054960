"""Build (or reuse from cache) the arm64 Debian image of the emulated Pi 4.

Nothing arm64 runs at build time. debootstrap's in-guest second stage takes
over 25 minutes under TCG, so instead: debootstrap --foreign only downloads,
the host unpacks every .deb, writes the few files the maintainer scripts would
have written (users, sshd config, keys, init), unpacks the guest's Python
wheels, byte-compiles with the host's Python 3.11 (same bytecode as the
guest's) and packs the tree with `mke2fs -d` (no loop mount, no privileges
beyond file ownership).

The result lives in CACHE/<name>-<key>/ where key hashes the recipe, so an
unchanged recipe is a cache hit that costs one directory lookup.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import progress
from harness.errors import HarnessError
from harness.qemu.debian import DEFAULT_MIRROR, fetch_deb, parse_packages, resolve_metapackage
from harness.qemu.initramfs import build_initramfs
from harness.qemu.recipe import Recipe, cache_key, default_cache_dir, load_recipe

#: tools the build needs, with the Debian package that provides each
BUILD_TOOLS = {
    "debootstrap": "debootstrap",
    "dpkg-deb": "dpkg",
    "tar": "tar",
    "mke2fs": "e2fsprogs",
    "ssh-keygen": "openssh-client",
}

WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64")

Log = Callable[[str], None]


class ImageBuildError(HarnessError):
    """The image could not be built; the message ends with the build log's tail."""


@dataclass(frozen=True)
class ImagePaths:
    """Everything a boot (or a qemu-user run) needs from one built image."""

    kernel: Path
    initrd: Path
    rootfs: Path
    dir: Path
    key: str
    root_dir: Path
    client_key: Path
    host_key_pub: Path

    @property
    def manifest(self) -> dict:
        return json.loads((self.dir / "build.json").read_text())

    @classmethod
    def in_dir(cls, d: Path, key: str) -> ImagePaths:
        return cls(kernel=d / "vmlinuz", initrd=d / "initrd.img", rootfs=d / "rootfs.ext4",
                   dir=d, key=key, root_dir=d / "root", client_key=d / "id_ed25519",
                   host_key_pub=d / "ssh_host_ed25519_key.pub")

    def complete(self) -> bool:
        return all(p.exists() for p in (self.kernel, self.initrd, self.rootfs, self.root_dir,
                                        self.client_key, self.host_key_pub,
                                        self.dir / "build.json"))


def missing_build_tools() -> list[str]:
    """'tool (Debian package)' for every build tool not on PATH."""
    return [f"{tool} (apt-get install {pkg})" for tool, pkg in BUILD_TOOLS.items()
            if shutil.which(tool) is None]


def cached_image(name: str = "pi4", cache_dir: Path | None = None,
                 recipe_dir: Path | None = None) -> ImagePaths | None:
    """The built image for the current recipe, or None (never builds)."""
    recipe = load_recipe(name, recipe_dir)
    key = cache_key(recipe)
    paths = ImagePaths.in_dir(Path(cache_dir or default_cache_dir()) / f"{name}-{key}", key)
    return paths if paths.complete() else None


def build_image(name: str = "pi4", cache_dir: Path | None = None,
                recipe_dir: Path | None = None, log: Log | None = None) -> ImagePaths:
    """Return the image for the recipe, building it first when the cache lacks it.

    Concurrent callers (two pytest sessions, CI and a developer) serialise on a
    lock file; the loser finds the winner's finished image. A build shows its
    stages on stderr (harness.progress: a bar on a terminal, plain lines in CI);
    ``log`` takes its messages instead when given.
    """
    recipe = load_recipe(name, recipe_dir)
    key = cache_key(recipe)
    cache = Path(cache_dir or default_cache_dir())
    final = ImagePaths.in_dir(cache / f"{name}-{key}", key)
    if final.complete():
        _point_current(cache, name, final.dir)
        return final
    missing = missing_build_tools()
    if missing:
        raise ImageBuildError("cannot build the QEMU image: missing " + ", ".join(missing))
    if os.geteuid() != 0:
        raise ImageBuildError("building the QEMU image needs root (debootstrap writes "
                              "root-owned files and device nodes): run `sudo gem-hil qemu build "
                              f"{name}` once; later runs use the cached image as any user")
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f".{name}.lock"):
        if final.complete():
            _point_current(cache, name, final.dir)
            return final
        work = cache / f".build-{name}-{key}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            with progress.task(f"qemu image {name}") as shown:
                _Builder(recipe, key, cache, work, log or shown.log, shown).run()
            shutil.rmtree(final.dir, ignore_errors=True)
            work.rename(final.dir)
            _hand_to_sudo_user(cache, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    _point_current(cache, name, final.dir)
    return final


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _hand_to_sudo_user(cache: Path, image: ImagePaths) -> None:
    """After `sudo gem-hil qemu build`, let the invoking user boot the image:
    the client key (0600) and the image's top-level files become theirs. The
    unpacked root tree stays root-owned, as it is inside the guest."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not (uid and gid and uid.isdigit() and gid.isdigit()):
        return
    for path in [cache, image.dir, *[p for p in image.dir.iterdir() if p.name != "root"]]:
        os.chown(path, int(uid), int(gid))


def _point_current(cache: Path, name: str, target: Path) -> None:
    """CACHE/<name> -> <name>-<key>: a stable path for the qemu-user wrapper."""
    link = cache / name
    if link.is_symlink() and os.readlink(link) == target.name:
        return
    tmp = cache / f".{name}.link-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    tmp.rename(link)


class _Builder:
    """One build in a scratch folder; every step logs to work/build.log."""

    def __init__(self, recipe: Recipe, key: str, cache: Path, work: Path, say: Log,
                 shown: progress.Task | None = None) -> None:
        self.recipe = recipe
        self.shown = shown
        self.key = key
        self.cache = cache
        self.work = work
        self.root = work / "root"
        self.say = say
        self.log_path = work / "build.log"
        self.timings: dict[str, float] = {}
        self.mirror = os.environ.get("GEM_HIL_DEBIAN_MIRROR", DEFAULT_MIRROR)
        self.facts: dict[str, object] = {}

    # -- helpers ------------------------------------------------------------

    def _sh(self, argv: list[str], timeout_s: float, **kw: object) -> None:
        with open(self.log_path, "a") as logf:
            logf.write(f"$ {' '.join(argv)}\n")
            logf.flush()
            try:
                res = subprocess.run(argv, stdout=logf, stderr=subprocess.STDOUT,
                                     timeout=timeout_s, check=False, **kw)  # type: ignore[call-overload]
            except subprocess.TimeoutExpired:
                self._fail(f"{argv[0]} did not finish in {timeout_s:.0f} s")
        if res.returncode != 0:
            self._fail(f"{' '.join(argv[:3])} ... exited with {res.returncode}")

    def _fail(self, what: str) -> None:
        tail = ""
        if self.log_path.is_file():
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-25:])
        raise ImageBuildError(f"QEMU image build failed: {what}\n--- build log tail "
                              f"({self.log_path}) ---\n{tail}")

    def _step(self, name: str, fn: Callable[[], None], index: int = 0, count: int = 0) -> None:
        if self.shown is not None:
            self.shown.update(name, done=index, total=count or None)
        else:
            self.say(f"{name} ...")
        t0 = time.monotonic()
        fn()
        self.timings[name] = round(time.monotonic() - t0, 1)
        self.say(f"{name} done in {self.timings[name]:.1f} s")

    # -- steps --------------------------------------------------------------

    def run(self) -> None:
        t0 = time.monotonic()
        self.say(f"building image {self.recipe.name}-{self.key} in {self.work} "
                 f"(log: {self.log_path})")
        steps = [("debootstrap (download only)", self.debootstrap),
                 ("unpack packages", self.unpack), ("kernel", self.kernel),
                 ("configure", self.configure), ("guest wheels", self.wheels),
                 ("byte-compile", self.byte_compile), ("initramfs", self.initramfs),
                 ("ext4 image", self.ext4)]
        for index, (name, fn) in enumerate(steps):
            self._step(name, fn, index, len(steps))
        if self.shown is not None:
            self.shown.update(done=len(steps))
        self.timings["total"] = round(time.monotonic() - t0, 1)
        manifest = {
            "name": self.recipe.name, "key": self.key, "suite": self.recipe.suite,
            "arch": self.recipe.arch, "mirror": self.mirror,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "timings_s": self.timings, **self.facts,
        }
        (self.work / "build.json").write_text(json.dumps(manifest, indent=2) + "\n")
        self.say(f"image ready in {self.timings['total']:.0f} s")

    def debootstrap(self) -> None:
        r = self.recipe
        self._sh(["debootstrap", f"--arch={r.arch}", "--foreign", f"--variant={r.variant}",
                  f"--include={','.join(r.include)}", r.suite, str(self.root), self.mirror],
                 timeout_s=1200)
        # debootstrap detects the container and makes proc a symlink to the host's
        proc = self.root / "proc"
        if proc.is_symlink():
            proc.unlink()
        proc.mkdir(exist_ok=True)

    def unpack(self) -> None:
        """Unpack every downloaded .deb the way debootstrap's own extractor
        does: keep bin -> usr/bin (merged /usr) instead of replacing it."""
        debpaths = (self.root / "debootstrap" / "debpaths").read_text().split("\n")
        debs = [line.split(" ", 1)[1] for line in debpaths if " " in line]
        packages = [line.split(" ", 1)[0] for line in debpaths if " " in line]
        with open(self.log_path, "a") as logf:
            for rel in debs:
                deb = self.root / rel.lstrip("/")
                fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                        stdout=subprocess.PIPE, stderr=logf)
                tar = subprocess.run(["tar", "-x", "--keep-directory-symlink",
                                      "--no-overwrite-dir", "-C", str(self.root)],
                                     stdin=fsys.stdout, stderr=logf, check=False)
                assert fsys.stdout is not None
                fsys.stdout.close()
                if fsys.wait() != 0 or tar.returncode != 0:
                    self._fail(f"unpacking {deb.name} failed")
        self.facts["packages"] = sorted(packages)

    def kernel(self) -> None:
        lists = sorted((self.root / "var/lib/apt/lists").glob("*_binary-arm64_Packages"))
        if not lists:
            self._fail("debootstrap left no arm64 Packages index in var/lib/apt/lists")
        index = parse_packages(lists[0].read_text(errors="replace"))
        fields = resolve_metapackage(index, self.recipe.kernel_package)
        debs = self.cache / "debs"
        debs.mkdir(exist_ok=True)
        deb = fetch_deb(fields, self.mirror, debs)
        kdir = self.work / "kernel"
        self._sh(["dpkg-deb", "-x", str(deb), str(kdir)], timeout_s=300)
        vmlinuz = sorted(kdir.glob("boot/vmlinuz-*"))
        mods = sorted(kdir.glob("lib/modules/*")) + sorted(kdir.glob("usr/lib/modules/*"))
        if not vmlinuz or not mods:
            self._fail(f"{deb.name} holds no boot/vmlinuz-* or lib/modules/*")
        shutil.copyfile(vmlinuz[0], self.work / "vmlinuz")
        self.kernel_modules = mods[0]
        self.facts["kernel"] = {"package": fields["Package"], "version": fields.get("Version"),
                                "release": mods[0].name}

    def configure(self) -> None:
        root = self.root
        # users: the base-passwd masters, root's shell /bin/sh (fast to start,
        # see DESIGN: bash startup costs per command), plus sshd's privsep user
        masters = root / "usr/share/base-passwd"
        passwd = (masters / "passwd.master").read_text().splitlines()
        passwd = [line.replace(":/root:/bin/bash", ":/root:/bin/sh") for line in passwd]
        passwd.append("sshd:x:100:65534::/run/sshd:/usr/sbin/nologin")
        (root / "etc/passwd").write_text("\n".join(passwd) + "\n")
        shutil.copyfile(masters / "group.master", root / "etc/group")
        # '*' = no password but not locked ('!' would make sshd refuse keys too)
        shadow = [f"{line.split(':')[0]}:*:19000:0:99999:7:::" for line in passwd]
        (root / "etc/shadow").write_text("\n".join(shadow) + "\n")
        os.chmod(root / "etc/shadow", 0o640)
        gshadow = [f"{line.split(':')[0]}:*::" for line in
                   (root / "etc/group").read_text().splitlines()]
        (root / "etc/gshadow").write_text("\n".join(gshadow) + "\n")
        os.chmod(root / "etc/gshadow", 0o640)
        # recipe overlay (init, sshd_config, hostname, ...)
        overlay = self.recipe.rootfs_overlay
        for src in sorted(overlay.rglob("*")):
            dst = root / src.relative_to(overlay)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.unlink(missing_ok=True)
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o755 if os.access(src, os.X_OK) else 0o644)
        init = root / "usr/sbin/init"
        init.unlink(missing_ok=True)
        init.symlink_to("/bin/busybox")
        if not (root / "usr/bin/busybox").is_file():
            self._fail("busybox-static did not install usr/bin/busybox; check include in "
                       "firmware/qemu/recipe.toml")
        # keys: the guest's host key (verified by the harness, never auto-accepted)
        # and the client key the harness logs in with
        hostkey = root / "etc/ssh/ssh_host_ed25519_key"
        for p in (hostkey, hostkey.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        self._sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                  f"gem-hil-{self.recipe.name}-host", "-f", str(hostkey)], timeout_s=60)
        os.chmod(hostkey, 0o600)
        shutil.copyfile(hostkey.with_suffix(".pub"), self.work / "ssh_host_ed25519_key.pub")
        client = self.work / "id_ed25519"
        self._sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                  f"gem-hil-{self.recipe.name}-client", "-f", str(client)], timeout_s=60)
        os.chmod(client, 0o600)
        sshdir = root / "root/.ssh"
        sshdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(client.with_suffix(".pub"), sshdir / "authorized_keys")
        os.chmod(root / "root", 0o700)
        os.chmod(sshdir, 0o700)
        os.chmod(sshdir / "authorized_keys", 0o600)
        # an ARM /proc/cpuinfo for qemu-user (-L ROOT redirects /proc/cpuinfo
        # here; onnxruntime's cpuinfo segfaults on the host's x86 text). Under
        # the VM the real procfs is mounted over it.
        shutil.copyfile(self.recipe.cpuinfo_file, root / "proc/cpuinfo")
        # not needed in the guest, and half the tree's size
        shutil.rmtree(root / "debootstrap", ignore_errors=True)
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()

    def wheels(self) -> None:
        r = self.recipe
        wheel_dir = self.cache / "wheels" / self.key
        wheel_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                "--no-deps", "--only-binary=:all:", "--require-hashes",
                "--python-version", r.python_version, "--implementation", "cp",
                "--abi", "cp" + r.python_version.replace(".", ""), "-d", str(wheel_dir),
                "-r", str(r.wheels_file)]
        for plat in WHEEL_PLATFORMS:
            argv += ["--platform", plat]
        self._sh(argv, timeout_s=900)
        site = self.root / f"usr/local/lib/python{r.python_version}/dist-packages"
        site.mkdir(parents=True, exist_ok=True)
        wheels = sorted(wheel_dir.glob("*.whl"))
        if not wheels:
            self._fail(f"pip downloaded no wheel into {wheel_dir}")
        for whl in wheels:
            _unpack_wheel(whl, site)
        self.facts["wheels"] = [w.name for w in wheels]

    def byte_compile(self) -> None:
        """Compile the guest's Python with the host's 3.11: bytecode is the same
        for the same minor version, and the first import in the guest is
        otherwise ~20 s of compiling under TCG. -s/-p keep guest paths in
        tracebacks."""
        want = tuple(int(x) for x in self.recipe.python_version.split("."))
        if sys.version_info[:2] != want:
            self.say(f"host Python is {sys.version_info[0]}.{sys.version_info[1]}, guest "
                     f"{self.recipe.python_version}: skipping byte-compile (first imports "
                     "in the guest will be slow)")
            self.facts["byte_compiled"] = False
            return
        dirs = [self.root / f"usr/lib/python{self.recipe.python_version}",
                self.root / f"usr/local/lib/python{self.recipe.python_version}/dist-packages",
                self.root / "usr/lib/python3/dist-packages"]
        argv = [sys.executable, "-m", "compileall", "-q", "-j", "2", "-s", str(self.root),
                "-p", "/", *[str(d) for d in dirs if d.is_dir()]]
        with open(self.log_path, "a") as logf:
            # rc 1 only means some file (a test fixture with deliberate syntax
            # errors) did not compile; the rest is written
            subprocess.run(argv, stdout=logf, stderr=subprocess.STDOUT, timeout=900, check=False)
        self.facts["byte_compiled"] = True

    def initramfs(self) -> None:
        loaded = build_initramfs(self.root / "usr/bin/busybox", self.recipe.initramfs_init,
                                 self.kernel_modules, self.recipe.initramfs_modules,
                                 self.work / "initrd.img")
        self.facts["initramfs_modules"] = loaded
        shutil.rmtree(self.work / "kernel", ignore_errors=True)

    def ext4(self) -> None:
        size = self.recipe.image_size_mb
        self._sh(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "gem-root", "-d", str(self.root),
                  str(self.work / "rootfs.ext4"), f"{size}M"], timeout_s=900)
        self.facts["image_size_mb"] = size


def _unpack_wheel(whl: Path, site: Path) -> None:
    """Install a wheel by unzipping it (what pip does for a pure copy install):
    *.data/purelib and platlib merge into site-packages, other .data parts
    (scripts, headers) are not needed by the agent and are skipped."""
    site_resolved = site.resolve()
    with zipfile.ZipFile(whl) as zf:
        for info in zf.infolist():
            name = info.filename
            parts = name.split("/")
            if len(parts) > 2 and parts[0].endswith(".data"):
                if parts[1] not in ("purelib", "platlib"):
                    continue
                name = "/".join(parts[2:])
            dest = (site / name).resolve()
            if site_resolved not in dest.parents and dest != site_resolved:
                raise ImageBuildError(f"{whl.name}: member {info.filename!r} escapes "
                                      "site-packages; refusing the wheel")
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(dest, 0o755 if mode & 0o111 else 0o644)
