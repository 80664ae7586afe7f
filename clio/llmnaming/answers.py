"""Cleaning what a real model writes into a text answer, before it is stored or embedded.

Small instruction-tuned models restate the question or the sentence they were asked to continue
("The user's overall request for the assistant is to ..."), write more than asked, and copy text
of the prompt itself into the answer when they have nothing to say. Three pure functions deal
with that:

- :func:`strip_restatement` removes a leading restatement of the prefill or question;
- :func:`cut_at_sentence` shortens an over-long answer at a sentence boundary (else a word
  boundary) instead of throwing it away;
- :func:`copies_prompt` tells an answer made of the prompt's own instructions from one about the
  conversation;

and :func:`scrub_pii` removes the e-mail addresses, phone numbers and URLs that slip through.

    >>> strip_restatement("The user's overall request for the assistant is to write a poem.",
    ...                   "The user's overall request for the assistant is to")
    'write a poem.'
    >>> strip_restatement("The assistant left because the user kept insulting it",
    ...                   "The assistant left because")
    'the user kept insulting it'
    >>> strip_restatement("the user asked for graphic gore", "The assistant left because")
    'the user asked for graphic gore'
    >>> cut_at_sentence("One idea. Two ideas here. Three ideas and more words.", 30)
    'One idea. Two ideas here.'
    >>> scrub_pii("mail jane.doe@example.com or call +1 (555) 010-2030, see https://x.org/a")
    'mail [email] or call [phone], see [url]'
"""

from __future__ import annotations

import re

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL_RE = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
_PHONE_RE = re.compile(r"(?<![\w+])\+?\d[\d ().-]{6,}\d(?!\w)")
# Words a restatement of the question is made of besides the prefill's and question's own.
_RESTATE_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "this",
        "that",
        "user",
        "user's",
        "users",
        "assistant",
        "assistant's",
        "ai",
        "is",
        "was",
        "are",
        "were",
        "to",
        "for",
        "of",
        "in",
        "overall",
        "main",
        "request",
        "requests",
        "requested",
        "asks",
        "asked",
        "asking",
        "wants",
        "wanted",
        "would",
        "like",
        "conversation",
        "summary",
        "answer",
        "situation",
        "reason",
        "here",
    ]
)
# Words a restatement ends on, after which the answer proper begins.
_JOINERS = frozenset(["to", "because", "that", "is", "was", "for", "about"])
_SENTENCE_END_RE = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def words(text: str) -> list[str]:
    """Lower-case word tokens (apostrophes inside words kept)."""
    return _WORD_RE.findall(text.lower().replace("’", "'"))


def _stem(word: str) -> str:
    return word.removesuffix("'s")


def strip_restatement(answer: str, prefill: str | None, question: str = "") -> str:
    """``answer`` without a leading restatement of ``prefill`` or ``question``.

    The longest leading run of words that all belong to the prefill, the question or the usual
    restating words, ending on a joining word ("to", "because", "that", ...) or on the prefill's
    own last word, is removed; so is a leading ``Answer:`` label. An answer that is nothing but a
    restatement is returned unchanged (the caller rejects it as empty of content)."""
    text = " ".join(answer.split()).strip().strip("\"'“”‘’").strip()
    text = re.sub(r"^(?:answer|summary|response)\s*:\s*", "", text, flags=re.IGNORECASE)
    vocab = set(words(prefill or "")) | set(words(question)) | _RESTATE_WORDS
    pre = words(prefill or "")
    enders = set(_JOINERS) | ({pre[-1]} if pre else set())
    # Walk the answer's words with their end offsets in the original text.
    spans = [(m.group(0).lower().replace("’", "'"), m.end()) for m in _WORD_RE.finditer(text.lower())]
    base = {_stem(w) for w in pre}
    cut = 0
    seen: set[str] = set()
    for i, (w, end) in enumerate(spans):
        if w not in vocab:
            break
        seen.add(_stem(w))
        if w not in enders:
            continue
        # a restatement repeats at least half of the prefill (or three question words); an answer
        # may also open with the prefill's own last word ("to write ...")
        if (
            (i == 0 and pre and w == pre[-1])
            or (i >= 1 and pre and len(seen & base) * 2 >= len(base))
            or (i >= 1 and not pre and len(seen & set(words(question))) >= 3)
        ):
            cut = end
    if not cut:
        return text
    rest = text[cut:].lstrip(" :,-–—").strip()
    return rest if words(rest) else text


def cut_at_sentence(text: str, max_chars: int) -> str:
    """``text`` if it fits, else its longest prefix of whole sentences within ``max_chars`` (when
    that keeps at least a third of the budget), else whole words."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END_RE.finditer(head)]
    if ends and ends[-1] >= max_chars // 3:
        return head[: ends[-1]].strip()
    if len(text) > max_chars and not text[max_chars].isspace() and " " in head:
        head = head[: head.rindex(" ")]
    return head.rstrip(" ,;:-–—").strip()


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def copies_prompt(answer: str, instructions: str, conversation: str = "", *, share: float = 0.6) -> bool:
    """True when ``answer`` is mostly made of the prompt's ``instructions`` rather than the
    ``conversation``: at least ``share`` of its word trigrams occur in the instructions and not in
    the conversation (short answers: its word pairs).

    >>> copies_prompt("text at most 300 characters continuing the sentence",
    ...               'Answer: text, at most 300 characters, continuing the sentence "The user"')
    True
    >>> copies_prompt("write a poem about the sea", "Answer the question about the conversation",
    ...               "User: write a poem about the sea")
    False
    """
    toks = words(answer)
    if len(toks) < 2:
        return False
    n = 3 if len(toks) >= 6 else 2
    grams = _ngrams(toks, n)
    own = _ngrams(words(instructions), n) - _ngrams(words(conversation), n)
    return len(grams & own) >= share * len(grams)


def _phone(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return "[phone]" if 7 <= digits <= 15 else match.group(0)


def scrub_pii(text: str) -> str:
    """Replace e-mail addresses, URLs and phone numbers with ``[email]``, ``[url]``, ``[phone]``."""
    text = _EMAIL_RE.sub("[email]", text)
    text = _URL_RE.sub("[url]", text)
    return _PHONE_RE.sub(_phone, text)


__all__ = ["copies_prompt", "cut_at_sentence", "scrub_pii", "strip_restatement", "words"]
