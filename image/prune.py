#!/usr/bin/env python3
"""Removes from a Debian root file system the shared-library packages that
nothing in it links.

Debian's GStreamer plugin packages depend on the libraries of every plugin
they hold (GTK 3 for gtksink, SDL 2 and Mesa through FFmpeg's libavdevice,
...). The firmware installs only the plugins it uses (dpkg's path-exclude
drops the others), so most of those libraries are dead weight. This walks
the dynamic linking of what is installed and purges every library package
no installed program, kept library or kept plugin needs:

  kept packages: the roots (named on the command line, Essential, Priority
  required) and, from a kept package, every dependency that is not a
  shared-library package (data, helpers); a shared-library package (one
  with a .shlibs or .symbols file) is kept only when a file it holds is
  named by DT_NEEDED of a kept ELF file, and then only that file counts as
  linked, not the rest of the package.

Afterwards every ELF file the walk kept must still find its libraries, or
the build fails naming the file and the library. What was unresolved in
Debian's packages already (optional plugins whose library is only
recommended, e.g. iproute2's ATM qdisc) is listed, not an error; so are
library files of kept packages that nothing links and that now miss a
removed library.

Usage: prune.py ROOT [--keep PKG ...] [--file PATH ...] [--report FILE] [--dry-run]
  --keep PKG   a root package
  --file PATH  an ELF file in the root no package owns (the daemon)
  --report F   writes why each package stays (or that it went) to F
Prints what it removes and the sizes before and after.
"""

import os
import struct
import subprocess
import sys

ARCH_DIR = "x86_64-linux-gnu"
DT_NEEDED, DT_RPATH, DT_RUNPATH = 1, 15, 29
SHT_DYNAMIC = 6


def parse_status(root):
    pkgs = {}
    with open(os.path.join(root, "var/lib/dpkg/status"), encoding="utf-8") as f:
        for para in f.read().split("\n\n"):
            fields, last = {}, None
            for line in para.splitlines():
                if line[:1] in (" ", "\t") and last:
                    fields[last] += "\n" + line
                elif ":" in line:
                    last, _, value = line.partition(":")
                    fields[last] = value.strip()
            name = fields.get("Package")
            if name and fields.get("Status", "").endswith(" installed"):
                pkgs[name] = fields
    return pkgs


def dependencies(fields):
    """Alternatives groups of Pre-Depends and Depends, names only."""
    out = []
    for key in ("Pre-Depends", "Depends"):
        for group in fields.get(key, "").split(","):
            alts = []
            for alt in group.split("|"):
                name = alt.strip().split(" ")[0].split(":")[0]
                if name:
                    alts.append(name)
            if alts:
                out.append(alts)
    return out


def info_file(root, pkg, ext):
    for name in (f"{pkg}.{ext}", f"{pkg}:amd64.{ext}"):
        p = os.path.join(root, "var/lib/dpkg/info", name)
        if os.path.exists(p):
            return p
    return None


class Root:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self._dirs = {}

    def host(self, path):
        """The host path of a root path, with the root's own directory
        symlinks (merged /usr) resolved inside the root."""
        d, base = os.path.split(path)
        if d not in self._dirs:
            parts, cur = [p for p in d.split("/") if p], ""
            for p in parts:
                nxt = f"{cur}/{p}"
                hp = self.root + nxt
                hops = 0
                while os.path.islink(hp) and hops < 16:
                    target = os.readlink(hp)
                    nxt = os.path.normpath(
                        target if target.startswith("/") else f"{cur}/{target}"
                    )
                    hp = self.root + nxt
                    hops += 1
                cur = nxt
            self._dirs[d] = cur or "/"
        return os.path.join(self.root + self._dirs[d], base)

    def real(self, host_path):
        """A host path with its symlinks followed inside the root (an
        absolute link target is the root's, never this machine's)."""
        hp = host_path
        for _ in range(32):
            if not os.path.islink(hp):
                return hp
            target = os.readlink(hp)
            rel = hp[len(self.root):]
            if not target.startswith("/"):
                target = os.path.normpath(os.path.join(os.path.dirname(rel), target))
            hp = self.host(target)
        return hp

    def library_dirs(self):
        dirs = []
        conf_dir = os.path.join(self.root, "etc/ld.so.conf.d")
        for name in sorted(os.listdir(conf_dir)) if os.path.isdir(conf_dir) else []:
            with open(os.path.join(conf_dir, name), encoding="utf-8") as f:
                for line in f:
                    line = line.split("#")[0].strip()
                    if line.startswith("/"):
                        dirs.append(line)
        dirs += [f"/lib/{ARCH_DIR}", f"/usr/lib/{ARCH_DIR}", "/lib", "/usr/lib"]
        seen, out = set(), []
        for d in dirs:
            if d not in seen:
                seen.add(d)
                out.append(d)
        return out


def elf_dynamic(path):
    """(needed, search path) of a 64-bit little-endian ELF file, or None
    when it is not one or has no dynamic section (kernel modules are
    skipped unread)."""
    if "/lib/modules/" in path:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for i in range(shnum):
        off = shoff + i * shentsize
        if off + 64 > len(data):
            return None
        _, stype, _, _, soff, ssize, slink = struct.unpack_from("<IIQQQQI", data, off)
        sections.append((stype, soff, ssize, slink))
    for stype, soff, ssize, slink in sections:
        if stype != SHT_DYNAMIC or slink >= len(sections):
            continue
        stroff = sections[slink][1]

        def string(at):
            end = data.index(b"\0", stroff + at)
            return data[stroff + at : end].decode("utf-8", "replace")

        needed, search = [], []
        for off in range(soff, soff + ssize, 16):
            tag, val = struct.unpack_from("<qQ", data, off)
            if tag == 0:
                break
            if tag == DT_NEEDED:
                needed.append(string(val))
            elif tag in (DT_RPATH, DT_RUNPATH):
                search += string(val).split(":")
        return needed, search
    return None


def main(argv):
    args = argv[1:]
    dry = "--dry-run" in args
    args = [a for a in args if a != "--dry-run"]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    root_dir, keep, extra, report = args[0], [], [], None
    rest = args[1:]
    while rest:
        if rest[0] in ("--keep", "--file") and len(rest) > 1:
            (keep if rest[0] == "--keep" else extra).append(rest[1])
            rest = rest[2:]
        elif rest[0] == "--report" and len(rest) > 1:
            report = rest[1]
            rest = rest[2:]
        else:
            print(f"prune: unknown argument {rest[0]}", file=sys.stderr)
            return 2
    root = Root(root_dir)
    pkgs = parse_status(root.root)
    provides = {}
    for name, fields in pkgs.items():
        for p in fields.get("Provides", "").split(","):
            p = p.strip().split(" ")[0]
            if p:
                provides.setdefault(p, []).append(name)
    missing = [k for k in keep if k not in pkgs]
    if missing:
        print(f"prune: --keep names packages that are not installed: {' '.join(missing)}", file=sys.stderr)
        return 1

    shlib = {n for n in pkgs if info_file(root.root, n, "shlibs") or info_file(root.root, n, "symbols")}
    owner, files_of = {}, {}
    for name in pkgs:
        lst = info_file(root.root, name, "list")
        paths = []
        if lst:
            with open(lst, encoding="utf-8", errors="replace") as f:
                paths = [line.rstrip("\n") for line in f if line.strip()]
        files_of[name] = paths
        for p in paths:
            owner.setdefault(root.host(p), name)

    lib_dirs = root.library_dirs()
    kept_pkgs, kept_files = set(), set()
    why = {}

    def root_reason(n):
        if n in keep:
            return "named"
        if pkgs[n].get("Essential") == "yes":
            return "Essential"
        if pkgs[n].get("Priority") == "required":
            return "Priority required"
        return None

    queue_pkgs = [(n, root_reason(n)) for n in pkgs if root_reason(n)]
    queue_files = [root.host(p) for p in extra]
    absent = [p for p, h in zip(extra, queue_files) if not os.path.isfile(h)]
    if absent:
        print(f"prune: --file names files that are not in the root: {' '.join(absent)}", file=sys.stderr)
        return 1
    unresolved = []

    def keep_pkg(name, whole, reason):
        if name in kept_pkgs:
            return
        kept_pkgs.add(name)
        why[name] = reason
        if whole:
            queue_files.extend(root.host(p) for p in files_of[name])
        for alts in dependencies(pkgs[name]):
            for alt in alts:
                cands = [alt] if alt in pkgs else provides.get(alt, [])
                cands = [c for c in cands if c not in shlib]
                if cands:
                    queue_pkgs.append((cands[0], f"a dependency of {name}"))
                    break

    # Libraries loaded through a program's RUNPATH (systemd's private
    # libraries) find each other through it too.
    runpaths = []

    def origin_of(path):
        """$ORIGIN of a file: its directory, as the root sees it."""
        return os.path.dirname(path)[len(root.root):] or "/"

    def resolve(soname, search, origin):
        """The host path of `soname` as the loader would find it for a
        file in root directory `origin` with RUNPATH `search`."""
        dirs = [s.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for s in search]
        for d in dirs + [r for r in runpaths if r not in dirs]:
            cand = root.host(os.path.join(d, soname))
            if os.path.exists(root.real(cand)):
                return cand
        for d in lib_dirs:
            cand = root.host(os.path.join(d, soname))
            if os.path.exists(root.real(cand)):
                return cand
        return None

    while queue_pkgs or queue_files:
        while queue_pkgs:
            name, reason = queue_pkgs.pop()
            keep_pkg(name, True, reason)
        while queue_files:
            path = queue_files.pop()
            if path in kept_files or os.path.islink(path) or not os.path.isfile(path):
                continue
            kept_files.add(path)
            dyn = elf_dynamic(path)
            if not dyn:
                continue
            needed, search = dyn
            origin = origin_of(path)
            for r in search:
                r = r.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
                if r not in runpaths:
                    runpaths.append(r)
            for soname in needed:
                lib = resolve(soname, search, origin)
                if lib is None:
                    unresolved.append((path, soname))
                    continue
                for cand in (lib, root.real(lib)):
                    name = owner.get(cand)
                    reason = f"{soname} linked by {path[len(root.root):]}"
                    if name and name not in shlib:
                        queue_pkgs.append((name, reason))
                    elif name:
                        keep_pkg(name, False, reason)
                queue_files.append(root.real(lib))

    # Found now that every program's RUNPATH is known: not unresolved.
    unresolved = [(p, so) for p, so in unresolved if resolve(so, [], origin_of(p)) is None]
    for path, soname in sorted(set(unresolved)):
        print(f"prune: already unresolved in Debian's packages: {path[len(root.root):]} needs {soname}",
              file=sys.stderr)

    def all_unresolved():
        """(file, soname) of every ELF file of every installed package
        (and the extra files) whose library is not in the root."""
        out = set()
        files = {root.host(p) for n in parse_status(root.root) for p in files_of.get(n, [])}
        files |= {root.host(p) for p in extra}
        for path in files:
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            dyn = elf_dynamic(path)
            if not dyn:
                continue
            needed, search = dyn
            for soname in needed:
                if resolve(soname, search, origin_of(path)) is None:
                    out.add((path, soname))
        return out

    before = all_unresolved()
    remove = sorted(set(pkgs) - kept_pkgs)

    def size(names):
        return sum(int(pkgs[n].get("Installed-Size", "0") or 0) for n in names) // 1024

    print(f"prune: keeping {len(kept_pkgs)} packages ({size(kept_pkgs)} MiB), "
          f"removing {len(remove)} ({size(remove)} MiB)", file=sys.stderr)
    for name in remove:
        print(f"prune: remove {name}", file=sys.stderr)
    if report:
        with open(report, "w", encoding="utf-8") as f:
            for name in sorted(pkgs):
                kib = pkgs[name].get("Installed-Size", "?")
                f.write(f"{name} {kib} KiB: " + (f"kept, {why[name]}\n" if name in kept_pkgs else "removed\n"))
    if dry or not remove:
        return 0
    subprocess.run(
        ["chroot", root.root, "dpkg", "--purge", "--force-depends", *remove],
        check=True,
        stdout=sys.stderr,
    )
    broken = all_unresolved() - before
    linked = sorted((p, so) for p, so in broken if p in kept_files)
    unlinked = sorted((p, so) for p, so in broken if p not in kept_files)
    for path, soname in unlinked:
        print(f"prune: unlinked library left without {soname}: {path[len(root.root):]}", file=sys.stderr)
    if linked:
        print("prune: files the firmware links lost a library:", file=sys.stderr)
        for path, soname in linked:
            print(f"  {path[len(root.root):]} needs {soname}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
