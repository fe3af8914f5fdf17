"""Ollama's `format: "json"` for the local model: decoding held to one well-formed JSON object.

`JsonPrefix` reads JSON text character by character and says whether it is still the beginning
of one JSON object (Ollama's JSON grammar also takes only an object at the top). The local
backend's logits processor asks it, token by token, which of the model's likeliest tokens keep the
reply such a beginning, and allows the end of text only once the object is closed.
"""

from __future__ import annotations

WHITESPACE = " \t\n\r"
# Whitespace allowed in one run outside strings: without a cap a small model can write blank
# lines until num_predict, which is legal JSON and useless (Ollama's grammar caps it too).
MAX_WHITESPACE = 20
LITERALS = {"t": "rue", "f": "alse", "n": "ull"}
ESCAPES = set('"\\/bfnrt')
HEX = set("0123456789abcdefABCDEF")
DIGITS = set("0123456789")
# Number states that may end the number; the others still need a digit.
NUMBER_ENDS = {"zero", "int", "frac", "exp"}


class JsonPrefix:
    """Where a reader of one JSON object stands. `feed` returns the state after more text, or None
    when that text cannot continue a JSON object; `complete` is true once the object is closed."""

    __slots__ = ("stack", "mode", "in_key", "blank", "pending")

    def __init__(self) -> None:
        self.stack: list[str] = []  # the open containers, "{" or "["
        self.mode = "start"
        self.in_key = False  # the open string is an object's key
        self.blank = 0  # whitespace read in the current run
        self.pending = ""  # what a literal still needs, or the hex digits left of a \\u escape

    @property
    def complete(self) -> bool:
        return self.mode == "done"

    def copy(self) -> JsonPrefix:
        other = JsonPrefix.__new__(JsonPrefix)
        other.stack, other.mode, other.in_key, other.blank, other.pending = (
            list(self.stack),
            self.mode,
            self.in_key,
            self.blank,
            self.pending,
        )
        return other

    def feed(self, text: str) -> JsonPrefix | None:
        state = self.copy()
        for char in text:
            if not state._step(char):
                return None
        return state

    def _step(self, c: str) -> bool:
        mode = self.mode
        if mode == "string":
            if c == '"':
                self.mode = "colon" if self.in_key else self._after_value()
            elif c == "\\":
                self.mode = "escape"
            return c >= " "  # control characters must be escaped
        if mode == "escape":
            if c == "u":
                self.mode, self.pending = "unicode", "xxxx"
                return True
            self.mode = "string"
            return c in ESCAPES
        if mode == "unicode":
            self.pending = self.pending[1:]
            if not self.pending:
                self.mode = "string"
            return c in HEX
        if mode == "literal":
            if c != self.pending[0]:
                return False
            self.pending = self.pending[1:]
            if not self.pending:
                self.mode = self._after_value()
            return True
        if mode in ("minus", "zero", "int", "dot", "frac", "e", "esign", "exp"):
            if self._number(c):
                return True
            if mode not in NUMBER_ENDS:
                return False
            self.mode = self._after_value()  # the number ended; the character is read after it
            return self._step(c)
        if mode == "done":
            return False
        if c in WHITESPACE:
            self.blank += 1
            return self.blank <= MAX_WHITESPACE
        self.blank = 0
        return self._structural(c)

    def _structural(self, c: str) -> bool:
        mode = self.mode
        if mode == "start":
            return self._open(c) if c == "{" else False
        if mode in ("key_or_close", "key"):
            if c == "}" and mode == "key_or_close":
                return self._close("{")
            if c == '"':
                self.mode, self.in_key = "string", True
                return True
            return False
        if mode == "colon":
            if c == ":":
                self.mode = "value"
                return True
            return False
        if mode == "after":
            if c == ",":
                self.mode = "key" if self.stack[-1] == "{" else "value"
                return True
            return c in "}]" and self._close("{" if c == "}" else "[")
        if mode == "value_or_close" and c == "]":
            return self._close("[")
        return self._value(c)  # mode "value" or "value_or_close"

    def _value(self, c: str) -> bool:
        if c in "{[":
            return self._open(c)
        if c == '"':
            self.mode, self.in_key = "string", False
        elif c == "-":
            self.mode = "minus"
        elif c == "0":
            self.mode = "zero"
        elif c in DIGITS:
            self.mode = "int"
        elif c in LITERALS:
            self.mode, self.pending = "literal", LITERALS[c]
        else:
            return False
        return True

    def _number(self, c: str) -> bool:
        """Read c as part of the number if it can be; the modes follow JSON's number grammar."""
        mode = self.mode
        if c in DIGITS:
            follows = {
                "minus": "zero" if c == "0" else "int",
                "int": "int",
                "dot": "frac",
                "frac": "frac",
                "e": "exp",
                "esign": "exp",
                "exp": "exp",
            }
            if mode not in follows:
                return False  # no digit after a leading zero
            self.mode = follows[mode]
            return True
        if c == "." and mode in ("zero", "int"):
            self.mode = "dot"
            return True
        if c in "eE" and mode in ("zero", "int", "frac"):
            self.mode = "e"
            return True
        if c in "+-" and mode == "e":
            self.mode = "esign"
            return True
        return False

    def _open(self, c: str) -> bool:
        self.stack.append(c)
        self.mode = "key_or_close" if c == "{" else "value_or_close"
        return True

    def _close(self, opener: str) -> bool:
        if not self.stack or self.stack[-1] != opener:
            return False
        self.stack.pop()
        self.mode = self._after_value()
        return True

    def _after_value(self) -> str:
        return "after" if self.stack else "done"
