"""A small arithmetic language for the ``multi`` grader's formula, parsed here and never handed to ``eval``.

Grammar (precedence climbing; ``*`` and ``/`` bind tighter than ``+`` and ``-``; unary minus binds tightest)::

    expr   := term (('+' | '-') term)*
    term   := unary (('*' | '/') unary)*
    unary  := '-' unary | atom
    atom   := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'

``NAME`` is a grader's name (lower-case letters, digits, ``_``), or one of the functions ``min(a, b, ...)``,
``max(a, b, ...)`` and ``clip(x, lo, hi)``. A divisor must be a constant expression (no names) that is not zero,
so a formula can never divide by zero at run time. Anything else (an attribute, a call of another function, a
string, ``**``, a name no grader has) is refused by :func:`parse`, with the position and the reason.

A parsed formula is a tree of tuples: ``("num", v)``, ``("name", n)``, ``("neg", x)``, ``(op, a, b)`` for op in
``+ - * /``, and ``("call", f, [args])``.
"""

from __future__ import annotations

import math
import re

FUNCTIONS = {"min": (2, None), "max": (2, None), "clip": (3, 3)}     # name -> (fewest, most) arguments
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([a-z_][a-z0-9_]*)|(.))")


class _AnyName(frozenset):
    """Every name: a syntax check before the names are known."""

    def __contains__(self, name) -> bool:
        return True


ANY_NAME = _AnyName()


class FormulaError(ValueError):
    """A formula the language does not allow; the message says where and why."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        number, name, other = m.groups()
        at = m.start(m.lastindex)
        if number is not None:
            out.append(("num", number, at))
        elif name is not None:
            out.append(("name", name, at))
        elif other in "+-*/(),":
            out.append(("op", other, at))
        else:
            raise FormulaError(f"character {other!r} at position {at + 1} is not allowed (numbers, grader names, "
                               "+ - * /, parentheses, min, max, clip)")
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, names: set[str]):
        self.text, self.names = text, names if isinstance(names, (set, frozenset)) else set(names)
        self.toks = _tokens(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "", len(self.text))

    def take(self, value: str | None = None):
        tok = self.peek()
        if value is not None and tok[1] != value:
            found = "the end" if tok[0] == "end" else repr(tok[1])
            raise FormulaError(f"expected {value!r} at position {tok[2] + 1}, found {found}")
        self.i += 1
        return tok

    def expr(self):
        node = self.term()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            node = (self.take()[1], node, self.term())
        return node

    def term(self):
        node = self.unary()
        while self.peek()[1] in ("*", "/") and self.peek()[0] == "op":
            _, op, _ = self.take()
            at = self.peek()[2]                      # where the right operand starts
            right = self.unary()
            if op == "/":
                if names_in(right):
                    raise FormulaError(f"the divisor at position {at + 1} names a grader; divide by numbers only, "
                                       "so that no score can make it zero")
                divisor = evaluate(right, {})
                if divisor == 0 or not math.isfinite(divisor):
                    raise FormulaError(f"the divisor at position {at + 1} is {'zero' if divisor == 0 else 'not finite'}")
            node = (op, node, right)
        return node

    def unary(self):
        if self.peek() == ("op", "-", self.peek()[2]):
            self.take()
            return ("neg", self.unary())
        return self.atom()

    def atom(self):
        kind, value, at = self.take()
        if kind == "num":
            if not math.isfinite(float(value)):
                raise FormulaError(f"the number {value} at position {at + 1} is not finite")
            return ("num", float(value))
        if kind == "name":
            if self.peek()[1] == "(" and self.peek()[0] == "op":
                if value not in FUNCTIONS:
                    raise FormulaError(f"{value}() at position {at + 1} is not a function of the language "
                                       f"(functions: {', '.join(FUNCTIONS)})")
                self.take("(")
                args = [self.expr()]
                while self.peek()[1] == ",":
                    self.take(",")
                    args.append(self.expr())
                self.take(")")
                least, most = FUNCTIONS[value]
                if len(args) < least or (most is not None and len(args) > most):
                    want = f"{least}" if most == least else f"at least {least}"
                    raise FormulaError(f"{value}() at position {at + 1} takes {want} arguments, got {len(args)}")
                if value == "clip" and not names_in(args[1]) and not names_in(args[2]) \
                        and evaluate(args[1], {}) > evaluate(args[2], {}):
                    raise FormulaError(f"clip() at position {at + 1}: its low bound is above its high bound")
                return ("call", value, args)
            if value in FUNCTIONS:
                raise FormulaError(f"{value} at position {at + 1} is a function: call it, {value}(...)")
            if value not in self.names:
                raise FormulaError(f"{value!r} at position {at + 1} is not a grader this formula may use "
                                   f"(known: {', '.join(sorted(self.names)) or 'none'})")
            return ("name", value)
        if (kind, value) == ("op", "("):
            node = self.expr()
            self.take(")")
            return node
        found = "the end" if kind == "end" else repr(value)
        raise FormulaError(f"expected a number, a grader's name or '(' at position {at + 1}, found {found}")


def parse(text: str, names) -> tuple:
    """The tree of ``text``, whose names must be among ``names``; FormulaError when the language refuses it."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the formula is empty")
    p = _Parser(text, names)
    try:
        node = p.expr()
    except RecursionError:
        raise FormulaError("the formula is nested too deeply") from None
    kind, value, at = p.peek()
    if kind != "end":
        raise FormulaError(f"unexpected {value!r} at position {at + 1}")
    return node


def names_in(node) -> list[str]:
    """The grader names a tree reads, in order of first use."""
    out: list[str] = []

    def walk(n):
        if n[0] == "name":
            if n[1] not in out:
                out.append(n[1])
        elif n[0] == "neg":
            walk(n[1])
        elif n[0] == "call":
            for a in n[2]:
                walk(a)
        elif n[0] != "num":
            walk(n[1])
            walk(n[2])
    walk(node)
    return out


def evaluate(node, values: dict[str, float]) -> float:
    """The value of a parsed tree, each name read from ``values``."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "name":
        return float(values[node[1]])
    if kind == "neg":
        return -evaluate(node[1], values)
    if kind == "call":
        args = [evaluate(a, values) for a in node[2]]
        if node[1] == "min":
            return min(args)
        if node[1] == "max":
            return max(args)
        x, lo, hi = args                       # clip
        return min(max(x, lo), hi)
    a, b = evaluate(node[1], values), evaluate(node[2], values)
    if kind == "+":
        return a + b
    if kind == "-":
        return a - b
    if kind == "*":
        return a * b
    return a / b                               # a constant, non-zero divisor (checked by parse)
