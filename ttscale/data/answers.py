"""Final answers: extract them from model text, group equivalent ones, grade them against gold.

Grading has two paths. The fast path (pure Python, microseconds) settles most pairs: answers whose
canonical keys match are correct; two plain numbers are compared exactly as rationals; numbers, words
and numeric sets/tuples that differ are wrong. Everything else goes to math-verify (sympy) in a pool of
worker processes with a hard time limit per comparison (`verify_pool`); an overrun counts as wrong.
This works from any thread, never `eval`s text, and never hangs. Answers with shapes known to blow
up sympy (huge exponent towers, factorials of expressions, deep nesting, very long strings) skip
sympy and are compared as strings only.

Conventions (documented choices): "50\\%" == "50" (percent signs and degree marks are dropped, so
"50\\%" != "0.5"); "1,000" == "1000" (comma thousands separators go, commas in tuples/sets stay);
trailing units "5\\text{ cm}" / "5 dollars" are dropped; "x = 5" == "5"; plain numbers compare exactly
("0.5" == "1/2", "0.333" != "1/3"); word answers ignore case.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Iterable

from tqdm.auto import tqdm

from ttscale.data import verify_pool

shutdown_grader = verify_pool.shutdown  # stop the worker processes (they restart on demand)

MAX_SYMPY_CHARS = 1000     # longer answers are compared as strings only
MAX_BRACE_DEPTH = 20       # latex2sympy recursion on deeper nesting takes tens of seconds

# ---------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_ANSWER_IS_RE = re.compile(r"(?i)\b(?:final\s+answer|the\s+answer)\s*(?:is|:)\s*:?[ \t]*([^\n]*)")
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_MATH_SPAN_RE = re.compile(r"\$\$?([^$]+)\$\$?|\\\((.+?)\\\)")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _brace_pairs(text: str) -> dict[int, int]:
    """Index of each '{' -> its closing '}' in one linear pass (escaped \\{ \\} skipped; unbalanced left out)."""
    pairs, stack, i, n = {}, [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def _boxed_contents(text: str) -> list[str]:
    """Contents of the top-level \\boxed{..} / \\fbox{..} / `\\boxed 5` in order (nested ones are inside)."""
    out, pos, pairs = [], 0, None
    while (m := _BOX_RE.search(text, pos)) is not None:
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            pairs = _brace_pairs(text) if pairs is None else pairs
            end = pairs.get(i)
            if end is None:  # unbalanced box: ignore it, keep looking
                pos = m.end()
                continue
            out.append(text[i + 1:end])
            pos = end + 1
        else:  # "\boxed 5": one token up to whitespace or '$'
            tok = re.match(r"[^\s$]*", text[i:]).group(0)  # type: ignore[union-attr]
            out.append(tok)
            pos = i + max(len(tok), 1)
    return [c for c in out if c.strip()]


def _clean(ans: str) -> str:
    """Remove surface noise that never changes an answer's meaning."""
    s = ans.strip()
    for _ in range(3):  # nested delimiters like "$\( 5 \)$"
        s = s.strip()
        if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
            s = s.strip("$")
        elif s.startswith(("\\(", "\\[")) and s.endswith(("\\)", "\\]")):
            s = s[2:-2]
    s = re.sub(r"\\[!,;: ]|\\(?:displaystyle|left|right)(?![A-Za-z])", lambda m: " " if m.group(0) == "\\ " else "", s)
    s = s.replace("{,}", ",").strip()
    if s.endswith(".") and not s.endswith(".."):  # a sentence's full stop ("5." -> "5"), not "..."
        s = s[:-1].rstrip()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s


def _after_answer_is(tail: str) -> str:
    tail = tail[:2 * MAX_SYMPY_CHARS]
    if (m := _MATH_SPAN_RE.search(tail)) is not None:
        return m.group(1) or m.group(2) or ""
    return re.split(r"(?<=\S)\.(?:\s|$)", tail, maxsplit=1)[0]


def extract_answer(text: str) -> str | None:
    """The final answer in `text`: last \\boxed{}, else "the (final) answer is X", else "#### X", else None."""
    if not text:
        return None
    boxes = _boxed_contents(text)
    if boxes:
        ans = boxes[-1]
        for _ in range(4):  # \fbox{\boxed{5}} -> 5 (bounded: hostile inputs nest thousands deep)
            inner = _boxed_contents(ans) if _BOX_RE.match(ans.strip()) else []
            if len(inner) != 1:
                break
            ans = inner[0]
        return _clean(ans) or None
    for regex, pick in ((_ANSWER_IS_RE, _after_answer_is), (_GSM8K_RE, lambda t: t)):
        matches = list(regex.finditer(text))
        if matches:
            ans = _clean(pick(matches[-1].group(1)))
            if ans:
                return ans
    return None


def _has_marker(text: str) -> bool:
    return bool(_BOX_RE.search(text) or _ANSWER_IS_RE.search(text) or "####" in text)


def _answer_of(text_or_answer: str | None) -> str | None:
    """A bare answer as is (cleaned); a text with an answer marker -> its extracted answer."""
    if text_or_answer is None:
        return None
    s = str(text_or_answer)
    ans = extract_answer(s) if _has_marker(s) else _clean(s)
    return ans or None

# ---------------------------------------------------------------- canonical keys


def _fix_shorthand(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{x} -> \\frac{1}{x}, \\sqrt2 -> \\sqrt{2} (single-char arguments)."""
    s = re.sub(r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}", s)
    s = re.sub(r"\\frac\s*([0-9A-Za-z])\s*([0-9A-Za-z])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*([0-9A-Za-z])\s*\{", r"\\frac{\1}{", s)
    return re.sub(r"\\frac\s*(\{[^{}]*\})\s*([0-9A-Za-z])", r"\\frac\1{\2}", s)


_UNIT_RE = re.compile(r"^(.*?[0-9}.])\s*\\(?:text|mbox|mathrm)\{\s*[A-Za-z][A-Za-z .]*(?:\^?\{?[23]\}?)?\s*\}$")
_WORDS_RE = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")
_NUM_WORDS_RE = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s+[A-Za-z][A-Za-z ]*$")


def _normalise(ans: str) -> str:
    """Notation-level normal form: same meaning, same string for the common cases."""
    if len(ans) > 20 * MAX_SYMPY_CHARS:  # no meaningful normal form; identical strings still match
        return ans.strip()
    s = _clean(ans)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = _fix_shorthand(s)
    s = re.sub(r"\^\s*\{?\\circ\}?|°", "", s)          # degrees
    s = re.sub(r"\\?%$", "", s.rstrip()).rstrip()       # percent: "50\%" == "50"
    s = s.replace("\\$", "")                            # currency
    if (m := _UNIT_RE.match(s)) is not None:            # units after a number: "5\text{ cm}"
        s = m.group(1)
    s = re.sub(r"\\(?:text|textbf|textit|mbox)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"^[A-Za-z]\s*=\s*(?=[^=]*$)", "", s)    # "x = 5" -> "5"
    if (m := _NUM_WORDS_RE.match(s)) is not None:       # "18 dollars" -> "18"
        s = m.group(1)
    s = re.sub(r"\s+", " ", s).strip()
    # Spaces only matter between letters ("\pi r"); elsewhere they are layout.
    s = re.sub(r"(?<![A-Za-z]) | (?![A-Za-z])", "", s)
    s = _clean(s)
    pairs, i, j = _brace_pairs(s), 0, len(s) - 1
    while i < j and pairs.get(i) == j:  # redundant groups: "{{5}}" -> "5"
        i, j = i + 1, j - 1
    s = s[i:j + 1]
    if _WORDS_RE.fullmatch(s) and len(s) >= 3:
        s = s.lower()
    return s


_DEC_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_RATIO_RE = re.compile(r"([+-]?\d+)/([+-]?\d+)")
_FRAC_RE = re.compile(r"([+-]?)\\frac\{([+-]?(?:\d+(?:\.\d*)?|\.\d+))\}\{([+-]?(?:\d+(?:\.\d*)?|\.\d+))\}")


def _as_number(s: str) -> Fraction | None:
    """A plain number (int, decimal, a/b, \\frac{a}{b}) as an exact rational; None for anything else."""
    if len(s) > 100:  # also keeps int() clear of its 4300-digit limit
        return None
    try:
        if _DEC_RE.fullmatch(s):
            return Fraction(s)
        if (m := _RATIO_RE.fullmatch(s)) is not None:
            return Fraction(int(m.group(1)), int(m.group(2)))
        if (m := _FRAC_RE.fullmatch(s)) is not None:
            value = Fraction(m.group(2)) / Fraction(m.group(3))
            return -value if m.group(1) == "-" else value
    except (ZeroDivisionError, ValueError):
        return None
    return None


def _key_of_normalised(s: str) -> tuple[str, bool]:
    """(key, simple): simple keys (numbers, words, numeric sets/tuples) compare by key alone."""
    if (x := _as_number(s)) is not None:
        return str(x), True
    if _WORDS_RE.fullmatch(s):
        return s, True
    m = re.fullmatch(r"(\\\{|\(|\[)([^(){}\[\]\\]*)(\\\}|\)|\])", s)
    if m is not None and len(s) <= 1000:
        items = [_as_number(x) for x in m.group(2).split(",")]
        if items and all(x is not None for x in items):
            if m.group(1) == "\\{":  # a set: order and repeats do not matter
                return "{" + ",".join(str(x) for x in sorted(set(items))) + "}", True  # type: ignore[type-var]
            if len(items) > 1:  # a tuple or an interval: order matters, so do the bracket kinds
                return m.group(1) + ",".join(str(x) for x in items) + m.group(3), True
    return s, False


def answer_key(answer: str | None) -> str:
    """Canonical vote key: equivalent answers ("1/2", "\\frac{1}{2}", "0.5", "\\dfrac12") share it.

    Pure string work, linear in the answer length (so always fast). Symbolic equivalences beyond
    numbers and numeric sets (e.g. "\\sqrt{8}" vs "2\\sqrt{2}") keep separate keys; `is_correct`
    still grades them right. None and empty answers get the key "".
    """
    ans = _answer_of(answer)  # a whole solution text works too: its extracted answer is keyed
    return _key_of_normalised(_normalise(ans))[0] if ans else ""

# ---------------------------------------------------------------- grading


def _fast_verdict(pred: str, gold: str) -> bool | None:
    kp, simple_p = _key_of_normalised(_normalise(pred))
    kg, simple_g = _key_of_normalised(_normalise(gold))
    if kp == kg:
        return bool(kp)
    if simple_p and simple_g:
        return False
    return None


_TOWER_RE = re.compile(r"(?:\^|\*\*)\s*\{[^{}]*(?:\^|\*\*)|(?:\^|\*\*)\s*\(?[^\s()]*(?:\^|\*\*)")
_BIG_EXP_RE = re.compile(r"(?:\^|\*\*)\s*[{(]?\s*\d{5,}")
_BAD_FACT_RE = re.compile(r"(?:\d{5,}|[)}\]])\s*!|\\(?:factorial|Gamma)")


def _risky(s: str) -> bool:
    """Shapes that make sympy hang or eat memory; these are compared as strings only."""
    if len(s) > MAX_SYMPY_CHARS or _BIG_EXP_RE.search(s) or _BAD_FACT_RE.search(s):
        return True
    if _TOWER_RE.search(s) and re.search(r"\d{2,}|[5-9]", s):  # 2^{3^2} is fine, 9^{9^9} is not
        return True
    depth = peak = 0
    for c in s:
        depth += (c in "{([") - (c in "})]")
        peak = max(peak, depth)
    return peak > MAX_BRACE_DEPTH


def _verify_answers(pred: str | None, gold: str | None, timeout_s: float) -> bool:
    if pred is None or gold is None:
        return False
    fast = _fast_verdict(pred, gold)
    if fast is not None:
        return fast
    p, g = _normalise(pred), _normalise(gold)
    if _risky(p) or _risky(g):
        return False
    return verify_pool.verify(g, p, timeout_s)


def is_correct(text_or_answer: str | None, gold: str | None, timeout_s: float = 5.0) -> bool:
    """Does the answer (or the text's extracted final answer) match `gold`? Bounded by ~timeout_s."""
    return _verify_answers(_answer_of(text_or_answer), _answer_of(gold), timeout_s)


def grade_many(pairs: Iterable[tuple[str | None, str | None]], timeout_s: float = 5.0) -> list[bool]:
    """is_correct over (text_or_answer, gold) pairs; fast-path pairs first, the rest on all workers."""
    answers = [(_answer_of(t), _answer_of(g)) for t, g in pairs]
    out: list[bool | None] = []
    for p, g in answers:
        out.append(False if p is None or g is None else _fast_verdict(p, g))
    slow = [i for i, v in enumerate(out) if v is None]
    if slow:
        with ThreadPoolExecutor(max_workers=verify_pool.pool_size()) as ex, \
                tqdm(total=len(slow), desc="grading (math-verify)", disable=len(slow) < 64) as bar:
            for i, verdict in zip(slow, ex.map(lambda j: _verify_answers(*answers[j], timeout_s), slow)):
                out[i] = verdict
                bar.update(1)
    return [bool(v) for v in out]
