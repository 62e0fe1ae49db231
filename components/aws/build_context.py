"""The build context Docker sends for an image, computed the way Docker computes it, so the image tag
can be a hash of exactly what the build sees (and nothing a checkout or a test run leaves behind).

The matching rules are ported from moby's own code, which both BuildKit (via tonistiigi/fsutil) and
the Pulumi Docker providers use:

- github.com/moby/patternmatcher `ignorefile/ignorefile.go` (`ReadAll`): how an ignore file is read
  (BOM, `#` comments, trimming, `filepath.Clean`, leading `/` dropped, `!` exceptions);
- github.com/moby/patternmatcher `patternmatcher.go` (`New`, `MatchesOrParentMatches`,
  `Pattern.compile`, `Pattern.match`): how a path is matched (`*`, `?`, `**`, `[...]`, `\\` escapes;
  the last matching pattern decides; a file is excluded when it or any parent directory matches);
- github.com/pulumi/pulumi-docker-build `provider/internal/context.go` (`getIgnorePatterns`), same
  as pulumi-docker `provider/provider.go`: `<Dockerfile>.dockerignore` wins over the context's
  `.dockerignore` (Docker's "Dockerfile-specific ignore file").
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

UTF8_BOM = b"\xef\xbb\xbf"
# patternmatcher.go `shouldEscape`: regexp metacharacters that are plain characters in a pattern.
_ESCAPED = frozenset(".+()|{}$")


def _go_clean(path: str) -> str:
    """Go's `filepath.Clean` on a slash path (posixpath.normpath keeps a leading `//`, Go does not)."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_ignore_file(data: bytes) -> list[str]:
    """Port of `ignorefile.ReadAll`."""
    patterns: list[str] = []
    # bufio.ScanLines: split at "\n", drop one trailing "\r".
    for number, raw in enumerate(data.split(b"\n")):
        if number == 0:
            raw = raw.removeprefix(UTF8_BOM)
        line = raw.removesuffix(b"\r").decode("utf-8", "surrogateescape")
        # A comment only when `#` is in column 1 (checked before trimming, as ReadAll does).
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass(frozen=True)
class Pattern:
    """One compiled pattern (`patternmatcher.Pattern`): the same four match types as moby's."""

    cleaned: str
    exclusion: bool
    kind: str  # "exact" | "prefix" | "suffix" | "regexp"
    regexp: re.Pattern[str] | None

    @classmethod
    def compile(cls, cleaned: str, exclusion: bool) -> Pattern:
        """Port of `Pattern.compile` with "/" as the separator."""
        reg = "^"
        kind = "exact"
        i, n = 0, len(cleaned)
        index = 0  # moby's loop counter `i`, which counts scanner steps, not characters
        while i < n:
            ch = cleaned[i]
            i += 1
            if ch == "*":
                if i < n and cleaned[i] == "*":
                    i += 1
                    if i < n and cleaned[i] == "/":  # treat `**/` as `**`
                        i += 1
                    if i >= n:  # `**` at the end: anything below
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            reg += ".*"
                            kind = "regexp"
                    else:
                        reg += "(.*/)?"
                        kind = "regexp"
                    if index == 0:
                        kind = "suffix"
                else:
                    reg += "[^/]*"
                    kind = "regexp"
            elif ch == "?":
                reg += "[^/]"
                kind = "regexp"
            elif ch in _ESCAPED:
                reg += "\\" + ch
            elif ch == "\\":
                if i < n:
                    reg += "\\" + cleaned[i]
                    i += 1
                    kind = "regexp"
                else:
                    reg += "\\"
            elif ch in "[]":
                reg += ch
                kind = "regexp"
            else:
                reg += ch
            index += 1
        compiled = re.compile(reg + r"\Z") if kind == "regexp" else None
        return cls(cleaned, exclusion, kind, compiled)

    def match(self, path: str) -> bool:
        """Port of `Pattern.match`."""
        if self.kind == "exact":
            return path == self.cleaned
        if self.kind == "prefix":
            return path.startswith(self.cleaned[:-2])
        if self.kind == "suffix":
            suffix = self.cleaned[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regexp is not None
        return self.regexp.match(path) is not None


class PatternMatcher:
    """Port of `patternmatcher.New` and `MatchesOrParentMatches`."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        for raw in patterns:
            pattern = raw.strip()
            if not pattern:
                continue
            pattern = _go_clean(pattern)
            exclusion = pattern.startswith("!")
            if exclusion:
                if len(pattern) == 1:
                    raise ValueError('illegal exclusion pattern: "!"')
                pattern = pattern[1:]
            self.patterns.append(Pattern.compile(pattern, exclusion))

    def matches(self, path: str) -> bool:
        """True when `path` (slash-separated, relative to the context) is ignored."""
        matched = False
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        for pattern in self.patterns:
            # An inclusion cannot change an already-ignored path, nor an exception a kept one.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != ".":
                hit = any(pattern.match("/".join(parent_dirs[: i + 1])) for i in range(len(parent_dirs)))
            if hit:
                matched = not pattern.exclusion
        return matched


def ignore_file(context: Path, dockerfile: Path) -> Path | None:
    """The ignore file Docker uses for this build: `<Dockerfile>.dockerignore`, else `.dockerignore`."""
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"):
        if candidate.is_file():
            return candidate
    return None


def context_files(context: Path, dockerfile: Path) -> list[str]:
    """Every file of the build context Docker sends, as sorted slash paths relative to `context`."""
    found = ignore_file(context, dockerfile)
    matcher = PatternMatcher(read_ignore_file(found.read_bytes()) if found else [])
    files: list[str] = []
    for directory, dirnames, filenames in os.walk(context):
        dirnames.sort()
        relative_dir = Path(directory).relative_to(context).as_posix()
        # os.walk does not descend into symlinked directories; Docker sends them as links.
        links = [d for d in dirnames if os.path.islink(os.path.join(directory, d))]
        for name in [*filenames, *links]:
            relative = name if relative_dir == "." else f"{relative_dir}/{name}"
            if not matcher.matches(relative):
                files.append(relative)
    return sorted(files)


def content_tag(
    context: Path, dockerfile: Path, platforms: Sequence[str], files: Sequence[str] | None = None
) -> str:
    """Same build inputs, same tag: the Dockerfile, the platforms, and each context file's path,
    executable bit (COPY keeps modes; git records only that bit) and content. Timestamps, caches
    and files the ignore file leaves out do not count, so an unchanged service never pushes again
    (ECR refuses to push an existing immutable tag). `files`: `context_files(context, dockerfile)`
    when the caller has already walked the context."""
    digest = hashlib.sha256()
    digest.update(b"dockerfile\0" + dockerfile.read_bytes() + b"\0")
    digest.update(b"platforms\0" + ",".join(platforms).encode() + b"\0")
    for relative in context_files(context, dockerfile) if files is None else files:
        path = context / relative
        mode = os.lstat(path).st_mode
        body = os.readlink(path).encode() if stat.S_ISLNK(mode) else path.read_bytes()
        executable = b"x" if mode & stat.S_IXUSR else b"-"
        digest.update(relative.encode() + b"\0" + executable + b"\0" + body + b"\0")
    return digest.hexdigest()[:16]


# The permissions a git checkout gives files under the usual umask (022): git records only the
# executable bit, the rest comes from the umask of whoever checked out.
CHECKOUT_MODES = (0o644, 0o755)


class ContextModeError(ValueError):
    """A context file's permissions differ from a standard checkout's."""


def check_checkout_modes(context: Path, files: Sequence[str]) -> None:
    """docker-build's context hash includes each file's full mode (`fileMode.String()` in
    provider/internal/context.go `hashFile`), so a checkout made under umask 002 (files 0664) hashes
    differently from CI's (0644): `pulumi up` there would rebuild an unchanged image and push its
    existing tag again, which ECR refuses for immutable tags. Fail before anything is registered,
    naming the files and the fix, instead of at the push."""
    odd = []
    for relative in files:
        mode = os.lstat(context / relative).st_mode
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) not in CHECKOUT_MODES:
            odd.append(f"{relative} ({stat.S_IMODE(mode):04o})")
    if odd:
        shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
        raise ContextModeError(
            f"{context.name}/ build context files have permissions other than 0644/0755: {shown}. "
            f"The image's context hash would differ from a standard checkout's and rebuild an existing "
            f"immutable tag; run `chmod -R go-w {context.name}` (or check out under umask 022)."
        )
