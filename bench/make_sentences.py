"""Rebuild secateurs/testing/assets/sentences/{train,heldout}.txt from Python's own documentation.

    python bench/make_sentences.py

Source: ``pydoc_data.topics`` (the text ``help()`` shows for keywords and topics, generated from the
Python reference manual; PSF License). Deterministic for a given Python version: prose paragraphs
(indented code blocks dropped) are split into sentences, filtered to plain English of 6 to 40 words,
deduplicated, and assigned to the held-out split by a hash of the sentence, so the split does not
depend on order.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "secateurs" / "testing" / "assets" / "sentences"
HELDOUT_SHARE = 6  # 1 in 6 sentences is held out
BULLET = re.compile(r"^([*-]|\d+\.|\(\d+\))\s+")
SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def paragraphs(text: str) -> list[str]:
    out, cur = [], []
    for line in text.splitlines():
        if not line.strip() or set(line.strip()) <= set("*=-~^"):
            if cur:
                out.append(" ".join(cur))
            cur = []
            continue
        cur.append(BULLET.sub("", line.strip()))
    if cur:
        out.append(" ".join(cur))
    return out


def plain(sentence: str) -> bool:
    words = sentence.split()
    if not 6 <= len(words) <= 40 or not sentence[0].isupper() or not sentence.endswith("."):
        return False
    if any(tok in sentence for tok in (">>>", "::", "__", "{", "}", "=", "|", "\\", "http")):
        return False
    letters = sum(c.isalpha() or c == " " for c in sentence)
    return letters / len(sentence) > 0.9


# stdlib modules whose docstrings (module, public classes, functions and methods) are added
MODULES = (
    "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "cmd", "codecs", "collections", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message",
    "enum", "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac",
    "html.parser", "http.client", "http.cookiejar", "http.server", "imaplib", "inspect", "ipaddress", "itertools",
    "json", "locale", "logging", "logging.handlers", "lzma", "mailbox", "multiprocessing", "netrc", "numbers",
    "operator", "optparse", "os", "pathlib", "pdb", "pickle", "pickletools", "platform", "plistlib", "poplib",
    "pprint", "queue", "random", "re", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal",
    "smtplib", "socket", "socketserver", "sqlite3", "ssl", "statistics", "string", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "trace", "traceback", "turtle", "typing",
    "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref", "xml.dom.minidom",
    "xml.etree.ElementTree", "zipfile", "zipimport",
)


def docstrings() -> list[str]:
    import importlib
    import inspect

    texts = []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        texts.append(inspect.getdoc(mod) or "")
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr)
            if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            texts.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                texts += [inspect.getdoc(v) or "" for k, v in sorted(vars(obj).items())
                          if not k.startswith("_") and callable(v)]
    return texts


def sentences() -> list[str]:
    from pydoc_data.topics import topics

    seen: set[str] = set()
    out = []
    for text in [topics[k] for k in sorted(topics)] + docstrings():
        for para in paragraphs(text):
            for s in SPLIT.split(para):
                s = " ".join(s.split())
                if plain(s) and s not in seen:
                    seen.add(s)
                    out.append(s)
    return out


def main() -> int:
    all_ = sentences()
    held = [s for s in all_ if int(hashlib.sha1(s.encode()).hexdigest(), 16) % HELDOUT_SHARE == 0]
    train = [s for s in all_ if int(hashlib.sha1(s.encode()).hexdigest(), 16) % HELDOUT_SHARE != 0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "train.txt").write_text("\n".join(train) + "\n")
    (OUT / "heldout.txt").write_text("\n".join(held) + "\n")
    print(f"{len(train)} train, {len(held)} held-out sentences from Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
