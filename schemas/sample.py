"""Real English prose available on every machine: the docstrings of Python's standard library.

Harvested deterministically (sorted modules and names), so every machine makes the same corpus.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import warnings

# Modules whose import has side effects (opening windows, printing, starting services).
_SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip", "venv",
         "pydoc_data", "test", "__main__", "xxsubtype", "xxlimited", "msilib", "winreg", "winsound"}
_WORDS = re.compile(r"[A-Za-z][a-z]+")


def _modules() -> list[str]:
    """Top-level standard-library modules (never site-packages or scripts on sys.path)."""
    return sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in _SKIP)


def stdlib_docstrings(min_words: int = 40) -> list[str]:
    """Distinct module, class and function docstrings of at least `min_words` words, in a fixed order."""
    seen: set[str] = set()
    docs: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in _modules():
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - an unimportable stdlib module just contributes nothing
                continue
            objects = [module] + [getattr(module, a, None) for a in sorted(vars(module)) if not a.startswith("_")]
            for obj in objects:
                doc = inspect.getdoc(obj) if obj is not None else None
                if doc and doc not in seen and len(_WORDS.findall(doc)) >= min_words:
                    seen.add(doc)
                    docs.append(doc)
    return docs


def prose_documents(count: int, target_chars: int, seed: int = 0) -> list[str]:
    """`count` documents of about `target_chars` characters, each a seeded draw of whole docstrings."""
    import random

    pool = stdlib_docstrings(min_words=10)
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        parts: list[str] = []
        size = 0
        while size < target_chars:
            part = rng.choice(pool)
            parts.append(part)
            size += len(part) + 2
        documents.append("\n\n".join(parts)[:target_chars])
    return documents


# A few sentences of real German, French and Spanish prose: the sample's non-English share.
FOREIGN_SENTENCES = {
    "de": [
        "Die Bibliothek stellt Funktionen bereit, mit denen sich Dateien lesen und schreiben lassen.",
        "Wenn der Parameter fehlt, wird der Standardwert verwendet und eine Warnung ausgegeben.",
        "Der Zug nach Berlin hatte heute Morgen wegen des Schnees eine Stunde Verspätung.",
        "Wir haben im Garten Tomaten, Bohnen und Kartoffeln gepflanzt, und alles wächst gut.",
        "Bitte lesen Sie die Anleitung sorgfältig, bevor Sie das Gerät zum ersten Mal benutzen.",
        "Die Ergebnisse der Studie zeigen, dass regelmäßige Bewegung die Gesundheit verbessert.",
    ],
    "fr": [
        "La bibliothèque fournit des fonctions pour lire et écrire des fichiers de toutes sortes.",
        "Si le paramètre est absent, la valeur par défaut est utilisée et un avertissement est affiché.",
        "Nous sommes allés au marché samedi matin pour acheter du pain, du fromage et des fruits.",
        "Le musée sera fermé pendant les travaux de rénovation jusqu'à la fin du mois prochain.",
        "Les résultats de l'enquête montrent que la plupart des habitants sont satisfaits du service.",
        "Il faut toujours vérifier les données avant de les publier dans un rapport officiel.",
    ],
    "es": [
        "La biblioteca ofrece funciones para leer y escribir archivos de distintos formatos.",
        "Si falta el parámetro, se utiliza el valor predeterminado y se muestra una advertencia.",
        "El tren a Madrid salió con retraso porque había mucha niebla en la estación esta mañana.",
        "Los niños jugaron en el parque toda la tarde mientras sus padres conversaban tranquilamente.",
        "Los resultados del estudio indican que dormir bien mejora la memoria y la concentración.",
        "Antes de usar el aparato por primera vez, lea atentamente las instrucciones de seguridad.",
    ],
}
COOKIE_BANNER = [
    "This website uses cookies to improve your experience. By continuing you accept our use of cookies.",
    "Accept all cookies | Manage preferences | Privacy Policy | Terms of Use",
    "Home | About | Products | Blog | Contact",
    "Subscribe to our newsletter",
    "Share on Facebook | Share on Twitter | Share by email",
    "© 2026 Example Media. All rights reserved.",
]
SPAM_LINES = [
    "BUY CHEAP WATCHES ONLINE BEST PRICE FREE SHIPPING CLICK HERE NOW",
    "best casino bonus best casino bonus win big win big today only",
    "cheap pills cheap pills no prescription needed order now order now",
]
SHORT_JUNK = ["click here", "asdf asdf", "Loading...", "404 Not Found", "null", "Page 2 of 17", "OK"]


def edit_words(text: str, rate: float, rng) -> str:
    """Replace, drop or duplicate about `rate` of the words: a near duplicate at a known edit rate."""
    words = text.split(" ")
    out = []
    for word in words:
        roll = rng.random()
        if roll < rate / 3:
            continue
        if roll < 2 * rate / 3:
            out.append(rng.choice(words))
        elif roll < rate:
            out.extend([word, word])
        else:
            out.append(word)
    return " ".join(out)


def dirty_corpus(docs: int, seed: int = 0, doc_chars: int = 1500) -> list[tuple[str, dict]]:
    """(kind, record) pairs the way web crawls look: mostly prose, plus every kind of dirt in known amounts.

    Kinds: prose, exact_duplicate, near_duplicate_<rate>, boilerplate, spam, short_junk, non_english.
    """
    import random

    rng = random.Random(seed)
    clean = prose_documents(docs, doc_chars, seed)
    records: list[tuple[str, dict]] = []

    def add(kind: str, text: str) -> None:
        records.append((kind, {"id": f"{kind}-{len(records):06d}", "text": text,
                               "url": f"https://sample.clover/{len(records)}"}))

    n_prose = int(docs * 0.7)
    for text in clean[:n_prose]:
        add("prose", text)
    originals = clean[:n_prose]
    for text in rng.sample(originals, docs // 20):
        add("exact_duplicate", text)
    for rate in (0.02, 0.05, 0.1, 0.2, 0.3):
        for text in rng.sample(originals, docs // 50):
            add(f"near_duplicate_{rate}", edit_words(text, rate, rng))
    for text in clean[n_prose: n_prose + docs // 20]:
        banner = rng.sample(COOKIE_BANNER, 4)
        add("boilerplate", "\n".join(banner[:2]) + "\n" + text + "\n" + "\n".join(banner[2:]))
    for _ in range(docs // 20):
        line = rng.choice(SPAM_LINES)
        add("spam", "\n".join(line for _ in range(rng.randint(10, 40))))
    for _ in range(docs // 40):
        add("short_junk", rng.choice(SHORT_JUNK))
    for _ in range(docs // 40):
        sentences = FOREIGN_SENTENCES[rng.choice(sorted(FOREIGN_SENTENCES))]
        add("non_english", " ".join(rng.choice(sentences) for _ in range(12)))
    rng.shuffle(records)
    return records


MALFORMED_LINES = [
    ("bad_json", b'{"id": "broken-1", "text": "an unterminated string}\n'),
    ("bad_json", b"not json at all\n"),
    ("invalid_utf8", b'{"id": "latin-1", "text": "caf\xe9 cr\xe8me"}\n'),
    ("missing_text", b'{"id": "no-text", "body": "the text is under another key"}\n'),
    ("non_string_text", b'{"id": "number", "text": 12345}\n'),
    ("nul_bytes", b'{"id": "nul", "text": "binary \\u0000 junk"}\n'),
]


def write_sample(out_dir: str, docs: int = 2000, seed: int = 0) -> dict[str, int]:
    """Write the built-in sample as two JSONL files (one gzipped) with malformed lines mixed in.

    Returns how many records of each kind were planted.
    """
    import gzip
    import json
    import os
    from collections import Counter

    os.makedirs(out_dir, exist_ok=True)
    records = dirty_corpus(docs, seed)
    lines = [json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n" for _, record in records]
    planted = Counter(kind for kind, _ in records)
    step = max(1, len(lines) // (len(MALFORMED_LINES) + 1))
    for i, (kind, raw) in enumerate(MALFORMED_LINES):
        lines.insert((i + 1) * step, raw)
        planted[f"malformed_{kind}"] += 1
    half = len(lines) // 2
    with open(os.path.join(out_dir, "crawl-00.jsonl"), "wb") as handle:
        handle.writelines(lines[:half])
    with open(os.path.join(out_dir, "crawl-01.jsonl.gz"), "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:  # mtime 0: identical bytes every run
        handle.writelines(lines[half:])
    return dict(sorted(planted.items()))


PAIR_PROMPTS = ("Explain this part of the Python documentation: {topic}",
                "What does the documentation say after: {topic}",
                "Continue the documentation: {topic}")
MALFORMED_PAIR_LINES = [
    ("bad_json", b'{"pair_id": "broken-pair", "prompt": "unterminated\n'),
    ("missing_chosen", b'{"pair_id": "no-chosen", "prompt": "Say hi", "rejected": "bye"}\n'),
    ("non_string_rejected", b'{"pair_id": "number-rejected", "prompt": "Say hi", "chosen": "hi", "rejected": 7}\n'),
]


def sample_pairs(count: int, seed: int = 0) -> list[tuple[str, dict]]:
    """(kind, record) preference pairs from docstrings: the chosen response continues the prompt's
    passage; the rejected one is the same words shuffled, a loop of one phrase, or cut to a stub.

    Dirt, in known amounts: exact duplicate pairs and pairs whose responses are identical.
    """
    import random

    rng = random.Random(seed)
    passages = [d for d in stdlib_docstrings() if len(d.split()) >= 60]
    rng.shuffle(passages)
    records: list[tuple[str, dict]] = []
    for i in range(count):
        words = passages[i % len(passages)].split()
        topic, answer = " ".join(words[:12]), " ".join(words[12:60])
        style = rng.choice(("shuffled", "loop", "stub"))
        if style == "shuffled":
            rejected = " ".join(rng.sample(answer.split(), len(answer.split())))
        elif style == "loop":
            rejected = " ".join([" ".join(words[12:16])] * 12)
        else:
            rejected = " ".join(words[12:15]) + "..."
        records.append(("pair", {"pair_id": f"pair-{i:05d}", "prompt": rng.choice(PAIR_PROMPTS).format(topic=topic),
                                 "chosen": answer, "rejected": rejected, "source": "sample",
                                 "meta": {"rejected_style": style}}))
    kept = [record for _, record in records]
    for j, record in enumerate(rng.sample(kept, max(count // 20, 1))):
        records.append(("exact_duplicate", {**record, "pair_id": f"dup-{j:05d}"}))
    for j, record in enumerate(rng.sample(kept, max(count // 40, 1))):
        records.append(("identical_responses", {**record, "pair_id": f"same-{j:05d}", "rejected": record["chosen"]}))
    rng.shuffle(records)
    return records


def write_sample_pairs(out_dir: str, count: int = 200, seed: int = 0) -> dict[str, int]:
    """Write the built-in preference pairs as pairs.jsonl with malformed lines; returns what was planted."""
    import json
    import os
    from collections import Counter

    os.makedirs(out_dir, exist_ok=True)
    records = sample_pairs(count, seed)
    lines = [json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n" for _, record in records]
    planted = Counter(kind for kind, _ in records)
    for i, (kind, raw) in enumerate(MALFORMED_PAIR_LINES):
        lines.insert((i + 1) * len(lines) // (len(MALFORMED_PAIR_LINES) + 1), raw)
        planted[f"malformed_{kind}"] += 1
    with open(os.path.join(out_dir, "pairs.jsonl"), "wb") as handle:
        handle.writelines(lines)
    return dict(sorted(planted.items()))
