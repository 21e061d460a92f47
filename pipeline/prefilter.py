"""A multi-literal prefilter for a customer's rules: which lines could a rule possibly match (pure).

Most log lines match none of a customer's rules, yet the plain engine runs every rule's regex on
every line. Here each pattern is reduced, once per compiled engine, to literals every match of it
must contain ("Task timed out after " in `Task timed out after \\d+ seconds`); one scan finds
where those literals occur, and only the rules whose literals all occur on a line are confirmed
with `regex`, under the same time bounds as before. The prefilter only ever says "cannot match":
a pattern it does not fully understand keeps no literals and is confirmed on every line.

Soundness rests on three choices:
- Patterns are read by the standard library's parser (the syntax `regex` keeps compatible in its
  default version) and only when it parses them cleanly: `regex`-only syntax (`\\p{..}`, variable
  lookbehind, fuzzy `{e<=1}`, POSIX classes, set operations, verbose mode) leaves a pattern
  unfiltered.
- Case-insensitive literals are kept only when ASCII, and are trusted only on ASCII lines: Unicode
  case folding (the Kelvin sign matches `k`) is left to `regex`.
- Patterns that can backtrack catastrophically (nested repetition, backreferences) are never
  filtered, so their cost stays visible as timeouts exactly as in the plain engine.

Scanning uses Hyperscan where the platform has it and `bytes.find` otherwise; both give the same
answer.
"""

from __future__ import annotations

import bisect
import importlib
import re
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MIN_LITERAL_CHARS",
    "LiteralScanner",
    "PatternLiterals",
    "hyperscan_available",
    "make_scanner",
    "pattern_literals",
]

MIN_LITERAL_CHARS = 3
"""Shorter literals (`,`, `P`) occur everywhere: they cost more to report than they save."""
MAX_FACTORS_PER_PATTERN = 3
SEPARATOR = b"\x00"
"""Joins the lines of one scan; no kept literal contains it, so no literal match spans two lines."""

try:  # the parser `re` itself uses; private, so its absence just means "no prefilter"
    _parser: Any = importlib.import_module("re._parser")
    _c: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - CPython 3.11+ has both
    _parser = _c = None


class _Unsupported(Exception):
    """The pattern uses something the prefilter does not reason about: leave it unfiltered."""


@dataclass(frozen=True, slots=True)
class PatternLiterals:
    """What every match of one pattern contains: each factor is a set of alternatives, one must occur."""

    factors: tuple[frozenset[str], ...]
    caseless: bool
    risky: bool
    """Nested repetition or backreferences: never filtered, so timeouts show exactly as before."""

    @property
    def filterable(self) -> bool:
        return bool(self.factors) and not self.risky


_UNFILTERED = PatternLiterals(factors=(), caseless=False, risky=False)


def _has_repeat_or_branch(items: Any) -> bool:
    for op, av in items:
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            if av[1] > 1:
                return True
            if _has_repeat_or_branch(av[2]):
                return True
        elif (
            op is _c.BRANCH
            or (op is _c.SUBPATTERN and _has_repeat_or_branch(av[3]))
            or (op in (_c.ASSERT, _c.ASSERT_NOT) and _has_repeat_or_branch(av[1]))
            or (op is _c.ATOMIC_GROUP and _has_repeat_or_branch(av))
        ):
            return True
    return False


@dataclass(slots=True)
class _Walk:
    caseless: bool
    risky: bool = False

    def factors(self, items: Any) -> list[frozenset[str]]:
        """Necessary factors of a sequence of parsed items."""
        found: list[frozenset[str]] = []
        run: list[str] = []

        def flush() -> None:
            if run:
                found.append(frozenset({"".join(run)}))
                run.clear()

        for op, av in items:
            if op is _c.LITERAL:
                char = chr(av)
                if char in "{}\x00":
                    raise _Unsupported("braces read differently by regex (fuzzy matching) or NUL")
                run.append(char)
                continue
            flush()
            if op is _c.SUBPATTERN:
                _group, add_flags, _del_flags, body = av
                if add_flags & (re.VERBOSE | re.LOCALE):
                    raise _Unsupported("scoped verbose or locale flags")
                if add_flags & re.IGNORECASE:
                    self.caseless = True
                found.extend(self.factors(body))
            elif op is _c.ATOMIC_GROUP:
                found.extend(self.factors(av))
            elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
                low, high, body = av
                if high > 1 and _has_repeat_or_branch(body):
                    self.risky = True
                inner = self.factors(body)
                if low >= 1:
                    found.extend(inner)
            elif op is _c.BRANCH:
                alternatives: set[str] = set()
                complete = True
                for branch in av[1]:
                    best = _best(self.factors(branch))
                    if best is None:
                        complete = False
                    else:
                        alternatives |= best
                if complete and alternatives:
                    found.append(frozenset(alternatives))
            elif op is _c.ASSERT:
                found.extend(self.factors(av[1]))
            elif op is _c.ASSERT_NOT:
                self.factors(av[1])  # only to notice risky or unsupported parts
            elif op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
                self.risky = True
            elif op in (_c.AT, _c.IN, _c.ANY, _c.NOT_LITERAL, _c.CATEGORY):
                pass
            else:
                raise _Unsupported(f"parser node {op}")
        flush()
        return found


def _usable(literal: str, caseless: bool) -> bool:
    return len(literal) >= MIN_LITERAL_CHARS and (literal.isascii() or not caseless)


def _best(factors: Sequence[frozenset[str]]) -> frozenset[str] | None:
    """The most selective factor: the longest shortest alternative, then the fewest alternatives."""
    ranked = sorted(factors, key=lambda f: (-min(map(len, f)), len(f), sorted(f)))
    return ranked[0] if ranked else None


def pattern_literals(pattern: str, *, ignore_case: bool) -> PatternLiterals:
    """The literals every match of `pattern` contains, or no factors when that cannot be said safely."""
    if _parser is None:
        return _UNFILTERED
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            parsed = _parser.parse(pattern, 0)
        if parsed.state.flags & (re.VERBOSE | re.LOCALE):
            raise _Unsupported("verbose or locale mode")
        walk = _Walk(caseless=ignore_case or bool(parsed.state.flags & re.IGNORECASE))
        factors = walk.factors(parsed)
    except (_Unsupported, re.error, FutureWarning, DeprecationWarning, RecursionError, OverflowError):
        return _UNFILTERED
    kept = [f for f in factors if all(_usable(literal, walk.caseless) for literal in f)]
    kept.sort(key=lambda f: (-min(map(len, f)), len(f), sorted(f)))
    unique = list(dict.fromkeys(kept))[:MAX_FACTORS_PER_PATTERN]
    if walk.caseless:
        unique = list(dict.fromkeys(frozenset(literal.lower() for literal in f) for f in unique))
    return PatternLiterals(factors=tuple(unique), caseless=walk.caseless, risky=walk.risky)


# -- scanning ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    buffer: bytes
    starts: list[int]
    """Byte offset where each line starts in `buffer`."""
    non_ascii: list[int]
    """Lines holding non-ASCII text, where caseless literals are not trusted."""


def _prepare(lines: Sequence[str]) -> _Prepared:
    text = "\x00".join(lines)
    starts: list[int] = []
    position = 0
    if text.isascii():
        for line in lines:
            starts.append(position)
            position += len(line) + 1
        return _Prepared(text.encode("ascii"), starts, [])
    encoded = [line.encode("utf-8", "surrogatepass") for line in lines]
    for chunk in encoded:
        starts.append(position)
        position += len(chunk) + 1
    non_ascii = [index for index, line in enumerate(lines) if not line.isascii()]
    return _Prepared(SEPARATOR.join(encoded), starts, non_ascii)


class LiteralScanner:
    """Finds, per line, which of a fixed set of literals occur. This one uses `bytes.find`."""

    backend = "python"

    def __init__(self, literals: Sequence[tuple[str, bool]]) -> None:
        self._literals = list(literals)
        self._needles = [(text.encode("utf-8"), caseless) for text, caseless in self._literals]
        self._caseless_ids = [index for index, (_, caseless) in enumerate(self._literals) if caseless]

    def scan(self, lines: Sequence[str]) -> dict[int, set[int]]:
        """line index -> ids of the literals that occur on it (caseless ones assumed on non-ASCII lines)."""
        hits: dict[int, set[int]] = {}
        if not lines or not self._needles:
            return hits
        prepared = _prepare(lines)
        self._find(prepared, hits)
        if self._caseless_ids:
            for line in prepared.non_ascii:
                hits.setdefault(line, set()).update(self._caseless_ids)
        return hits

    def _find(self, prepared: _Prepared, hits: dict[int, set[int]]) -> None:
        buffer = prepared.buffer
        lowered = buffer.lower() if any(caseless for _, caseless in self._needles) else buffer
        starts = prepared.starts
        line_count = len(starts)
        for literal_id, (needle, caseless) in enumerate(self._needles):
            haystack = lowered if caseless else buffer
            at = haystack.find(needle)
            while at >= 0:
                line = bisect.bisect_right(starts, at) - 1
                hits.setdefault(line, set()).add(literal_id)
                if line + 1 >= line_count:
                    break
                at = haystack.find(needle, starts[line + 1])


class HyperscanScanner(LiteralScanner):
    """The same answers from one Hyperscan pass over all lines (a scratch space per thread)."""

    backend = "hyperscan"

    def __init__(self, literals: Sequence[tuple[str, bool]]) -> None:
        super().__init__(literals)
        import hyperscan

        self._hs = hyperscan
        self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        expressions = [b"".join(b"\\x%02x" % byte for byte in needle) for needle, _ in self._needles]
        flags = [hyperscan.HS_FLAG_CASELESS if caseless else 0 for _, caseless in self._needles]
        self._database.compile(
            expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions), flags=flags
        )
        self._local = threading.local()

    def _find(self, prepared: _Prepared, hits: dict[int, set[int]]) -> None:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hs.Scratch(self._database)
        starts = prepared.starts
        where = bisect.bisect_right

        def on_match(literal_id: int, _from: int, to: int, _flags: int, _context: object) -> None:
            line = where(starts, to - 1) - 1
            found = hits.get(line)
            if found is None:
                hits[line] = {literal_id}
            else:
                found.add(literal_id)

        self._database.scan(prepared.buffer, match_event_handler=on_match, scratch=scratch)


def hyperscan_available() -> bool:
    try:
        importlib.import_module("hyperscan")
    except ImportError:
        return False
    return True


def make_scanner(literals: Iterable[tuple[str, bool]], backend: str = "auto") -> LiteralScanner:
    """`auto`: Hyperscan when it imports (and compiles), else the pure-Python scanner."""
    chosen = list(literals)
    if backend in ("auto", "hyperscan") and chosen:
        try:
            return HyperscanScanner(chosen)
        except Exception:
            if backend == "hyperscan":
                raise
    return LiteralScanner(chosen)
