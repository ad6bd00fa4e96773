"""Pieces of the fake Drive (tests/fakes/google_api.py): the `q` search grammar, the
`fields` partial-response selector, and Drive's error shape.

The q grammar, per developers.google.com/drive/api/guides/search-files and
/ref-search-terms:  query := term (("and" | "or") term)*,  term := "not" term |
"(" query ")" | FIELD OP VALUE | VALUE "in" FIELD.  Strings are single-quoted with
\\' and \\\\ escapes. Each field allows only the operators the reference lists for
it; anything else raises Invalid, which the fake answers 400 "Invalid Value".
`name contains` matches by prefix (of the name or of a word in it), as Drive does;
`fullText contains` matches words or a "quoted phrase" anywhere, case-insensitively.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable


class Invalid(Exception):
    pass


class Fail(Exception):
    """An error answer in Drive's JSON shape."""

    def __init__(self, status: int, message: str, reason: str, domain: str = "global", **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.reason, self.domain, self.extra = status, message, reason, domain, extra

    def body(self) -> dict[str, Any]:
        item = {"message": self.message, "domain": self.domain, "reason": self.reason}
        item.update({k: v for k, v in self.extra.items() if k in ("location", "locationType")})
        error: dict[str, Any] = {"code": self.status, "message": self.message, "errors": [item]}
        if "api_status" in self.extra:
            error["status"] = self.extra["api_status"]
        if "details" in self.extra:
            error["details"] = self.extra["details"]
        return {"error": error}


def not_found(fid: str) -> Fail:
    return Fail(404, f"File not found: {fid}.", "notFound", location="fileId", locationType="parameter")


OPERATORS = {
    "name": {"contains", "=", "!="},
    "fullText": {"contains"},
    "mimeType": {"contains", "=", "!="},
    "modifiedTime": {"<=", "<", "=", "!=", ">", ">="},
    "trashed": {"=", "!="},
}
IN_FIELDS = {"parents", "owners"}
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op><=|>=|!=|=|<|>|\(|\))|(?P<word>[A-Za-z]+))")


def _tokens(q: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(q):
        if q[pos:].strip() == "":
            break
        m = _TOKEN.match(q, pos)
        if not m:
            raise Invalid(q[pos:pos + 20])
        pos = m.end()
        if m.group("str") is not None:
            raw = m.group("str")[1:-1]
            if re.search(r"\\[^'\\]", raw):
                raise Invalid("bad escape")
            out.append(("str", re.sub(r"\\(.)", r"\1", raw)))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            out.append(("word", m.group("word")))
    return out


Pred = Callable[[Any], bool]


def parse(q: str) -> Pred:
    if not q.strip():
        return lambda doc: True
    toks = _tokens(q)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(toks):
            raise Invalid("unexpected end")
        pos += 1
        return toks[pos - 1]

    def query() -> Pred:  # or binds looser than and
        left = conj()
        while peek() == ("word", "or"):
            take()
            right = conj()
            left = (lambda a, b: lambda d: a(d) or b(d))(left, right)
        return left

    def conj() -> Pred:
        left = term()
        while peek() == ("word", "and"):
            take()
            right = term()
            left = (lambda a, b: lambda d: a(d) and b(d))(left, right)
        return left

    def term() -> Pred:
        tok = take()
        if tok == ("word", "not"):
            inner = term()
            return lambda d: not inner(d)
        if tok == ("op", "("):
            inner = query()
            if take() != ("op", ")"):
                raise Invalid(")")
            return inner
        if tok[0] == "str":
            if take() != ("word", "in"):
                raise Invalid("in")
            kind, fld = take()
            if kind != "word" or fld not in IN_FIELDS:
                raise Invalid(fld)
            return lambda d, v=tok[1], f=fld: v in d.value(f)
        if tok[0] != "word" or tok[1] not in OPERATORS:
            raise Invalid(tok[1])
        fld = tok[1]
        op = take()
        op_text = op[1]
        if op_text not in OPERATORS[fld] or op[0] == "str":
            raise Invalid(op_text)
        val = take()
        if fld == "trashed":
            if val not in (("word", "true"), ("word", "false")):
                raise Invalid("bool")
            want = val[1] == "true"
            return lambda d: (d.value("trashed") == want) == (op_text == "=")
        if val[0] != "str":
            raise Invalid("value")
        return _compare(fld, op_text, val[1])

    predicate = query()
    if pos != len(toks):
        raise Invalid(str(toks[pos]))
    return predicate


def _compare(fld: str, op: str, value: str) -> Pred:
    if fld == "modifiedTime":
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(value) from None
        if when.tzinfo is None:
            raise Invalid(value)  # Drive wants RFC 3339 with an offset (or Z)
        t = when.timestamp()
        ops = {"<": t.__gt__, "<=": t.__ge__, ">": t.__lt__, ">=": t.__le__, "=": t.__eq__, "!=": t.__ne__}
        return lambda d: ops[op](d.value(fld))
    if op == "contains":
        needle = value.lower()
        if fld == "name":  # prefix matching: of the whole name, or of one of its words
            return lambda d: d.value(fld).lower().startswith(needle) or any(
                w.startswith(needle) for w in re.split(r"[\s_\-.,()]+", d.value(fld).lower()))
        if fld == "fullText":
            phrase = needle.strip('"')
            words = [phrase] if needle.startswith('"') else phrase.split()
            return lambda d: all(w in d.value(fld).lower() for w in words)
        return lambda d: needle in d.value(fld).lower()
    if op == "=":
        return lambda d: d.value(fld) == value
    return lambda d: d.value(fld) != value


# fields: "nextPageToken,files(id,name,owners(displayName))" ---------------------------


def parse_fields(spec: str) -> dict[str, Any]:
    if spec.strip() == "*":
        return {}
    tree: dict[str, Any] = {}
    stack = [tree]
    name = ""
    for ch in spec + ",":
        if ch in ",()":
            name = name.strip()
            if name:
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_/]*", name):
                    raise Invalid(name)
                stack[-1].setdefault(name, {})
            if ch == "(":
                if not name:
                    raise Invalid("(")
                stack.append(stack[-1][name])
            elif ch == ")":
                if len(stack) == 1:
                    raise Invalid(")")
                stack.pop()
            name = ""
        else:
            name += ch
    if len(stack) != 1:
        raise Invalid("(")
    return tree


def apply_fields(body: Any, tree: dict[str, Any]) -> Any:
    if not tree:
        return body
    if isinstance(body, list):
        return [apply_fields(item, tree) for item in body]
    if not isinstance(body, dict):
        return body
    out = {}
    for key, sub in tree.items():
        head, _, rest = key.partition("/")
        if head in body:
            out[head] = apply_fields(body[head], {rest: sub} if rest else sub)
    return out
