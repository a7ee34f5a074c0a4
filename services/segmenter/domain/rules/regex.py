"""matches_regex patterns that mean the same to Python's re.search, RE2 and PostgreSQL's ~.

Rules accept a small common subset: literals, `.`, `^`, `$`, `|`, groups, `[...]` sets with
ASCII ranges, quantifiers `* + ? {m} {m,} {m,n}` (n <= 255) and `\\` before punctuation.
Two Python meanings differ in PostgreSQL and RE2 and are translated: `.` never matches a
newline, and `$` also matches just before a final newline.

In the segmenter a pattern runs on RE2 (google-re2), whose time is linear in the text, never
on Python's backtracking `re`: there `(a+)+$` takes seconds for a 22-character local part and
4x more per two characters, so one shop's rule would stall every shop's events. PostgreSQL's
engine, which runs the same pattern for backfills, has no backreferences in this subset to
backtrack on.
"""

from collections.abc import Callable

import re2

MAX_LENGTH = 200
MAX_REPEAT = 255  # PostgreSQL's limit for {m,n}
# RE2's time per character of text grows with its program (the compiled instructions; `a`
# is 1, `[a-z]{1,255}` about 510): this bounds a pattern's cost per character. 200 characters
# of counted repeats reach about 11,000.
MAX_PROGRAM_SIZE = 2000
# The memory RE2 may take for one pattern (its program and its DFA cache; past the cache it
# falls back to its NFA, still linear in the text). RE2's default is 8 MiB.
MAX_MEM = 2 << 20

_SPECIAL = frozenset("\\.^$|()[]{}*+?-")
_NOT_IN_SET = frozenset("\\[]^&~|")  # escapes, nested classes and set operations differ
_RANGE_CLASSES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_count(text: str) -> bool:
    return text.isascii() and text.isdigit()


class RegexError(ValueError):
    """The pattern is outside the portable subset."""


class RegexTooLargeError(RegexError):
    """The pattern compiles to more RE2 instructions than MAX_PROGRAM_SIZE."""


class _Translator:
    def __init__(self, pattern: str, end: str) -> None:
        self.pattern = pattern
        # What `$` becomes: Python's meaning (the end, or just before a final newline).
        self.end = end
        self.at = 0
        self.out: list[str] = []

    def fail(self, message: str) -> RegexError:
        return RegexError(f"{message} (at position {self.at})")

    def peek(self, ahead: int = 0) -> str:
        index = self.at + ahead
        return self.pattern[index] if index < len(self.pattern) else ""

    def translate(self) -> str:
        self.alternation()
        if self.at < len(self.pattern):
            raise self.fail("unbalanced )")
        return "".join(self.out)

    def alternation(self) -> None:
        self.branch()
        while self.peek() == "|":
            self.at += 1
            self.out.append("|")
            self.branch()

    def branch(self) -> None:
        pieces = 0
        while self.peek() not in ("", "|", ")"):
            repeatable = self.atom()
            if self.quantifier():
                if not repeatable:
                    raise self.fail("nothing to repeat")
                if self.peek() in ("*", "+", "?", "{"):
                    raise self.fail("a quantifier cannot follow a quantifier")
            pieces += 1
        if pieces == 0:
            raise self.fail("empty alternative or group")

    def atom(self) -> bool:
        char = self.peek()
        self.at += 1
        if char == "(":
            if self.peek() == "?":
                raise self.fail("(? extensions are not supported")
            self.out.append("(")
            self.alternation()
            if self.peek() != ")":
                raise self.fail("missing )")
            self.at += 1
            self.out.append(")")
        elif char == "[":
            self.bracket()
        elif char == ".":
            self.out.append(r"[^\n]")
        elif char == "^":
            self.out.append("^")
            return False
        elif char == "$":
            self.out.append(self.end)
            return False
        elif char == "\\":
            escaped = self.peek()
            if escaped not in _SPECIAL or not escaped:
                raise self.fail("only punctuation can be escaped")
            self.at += 1
            self.out.append("\\" + escaped)
        elif char in ("*", "+", "?", "{"):
            raise self.fail("nothing to repeat")
        elif char in ("]", "}"):
            raise self.fail(f"escape a literal {char} as \\{char}")
        elif not char.isprintable():
            raise self.fail("control characters are not allowed")
        else:
            self.out.append(char)
        return True

    def bracket(self) -> None:
        self.out.append("[")
        if self.peek() == "^":
            self.at += 1
            self.out.append("^")
        items = 0
        while self.peek() != "]":
            char = self.peek()
            if not char:
                raise self.fail("missing ]")
            if char in _NOT_IN_SET or not char.isprintable():
                raise self.fail(f"{char!r} is not allowed inside [...]")
            if char == "-" and self.peek(1) != "]":
                raise self.fail("inside [...] a literal - must come last")
            if self.peek(1) == "-" and self.peek(2) not in ("]", ""):
                self.range(char, self.peek(2))
            else:
                self.at += 1
                self.out.append(char)
            items += 1
        if items == 0:
            raise self.fail("empty [...]")
        self.at += 1
        self.out.append("]")

    def range(self, low: str, high: str) -> None:
        if not any(low in chars and high in chars for chars in _RANGE_CLASSES) or low > high:
            raise self.fail("ranges go from digit to digit or letter to letter of one case")
        self.at += 3
        self.out.append(f"{low}-{high}")

    def quantifier(self) -> bool:
        char = self.peek()
        if char in ("*", "+", "?"):
            self.at += 1
            self.out.append(char)
            return True
        if char != "{":
            return False
        end = self.pattern.find("}", self.at)
        if end < 0:
            raise self.fail("missing }")
        low, comma, high = self.pattern[self.at + 1 : end].partition(",")
        if not _is_count(low) or (high and not _is_count(high)):
            raise self.fail("write a repeat as {m}, {m,} or {m,n}")
        if int(low) > MAX_REPEAT or (high and not int(low) <= int(high) <= MAX_REPEAT):
            raise self.fail(f"repeat counts go up to {MAX_REPEAT}, with m <= n")
        self.out.append(self.pattern[self.at : end + 1])
        self.at = end + 1
        return True


def _translate(pattern: str, end: str) -> str:
    if len(pattern) > MAX_LENGTH:
        raise RegexError(f"longer than {MAX_LENGTH} characters")
    return _Translator(pattern, end).translate()


def to_postgres(pattern: str) -> str:
    """The PostgreSQL ~ pattern with the same matches as re.search(pattern); raises RegexError."""
    return _translate(pattern, r"(?=\n?$)")


def to_re2(pattern: str) -> str:
    """The RE2 pattern with the same matches as re.search(pattern); raises RegexError."""
    # RE2 has no lookahead; consuming the final newline changes no search's yes or no.
    return _translate(pattern, r"(?:\n?\z)")


def compile_search(pattern: str) -> Callable[[str], bool]:
    """A linear-time test: does re.search(pattern, text) find a match; raises RegexError."""
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the caller's RuleError, not a log line
    options.max_mem = MAX_MEM
    try:
        compiled = re2.compile(to_re2(pattern), options=options)
    except re2.error as exc:
        raise RegexError(f"RE2 refused it: {exc}") from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise RegexTooLargeError(
            f"it compiles to {compiled.programsize} RE2 instructions, more than "
            f"{MAX_PROGRAM_SIZE}: use fewer or smaller counted repeats"
        )
    search = compiled.search
    return lambda text: search(text) is not None
