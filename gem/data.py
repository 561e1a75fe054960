"""The multi-domain data set GEM trains on, and a JSONL loader for users' data.

The built-in set is *generated*, deterministically from a seed: for each of
the eight domains (``gem.config.DOMAINS``) a handful of sentence templates are
filled with that domain's vocabulary plus shared filler words. Nothing is
downloaded and the same seed always yields the same texts, so artifacts and
their reference inputs are reproducible byte for byte.

Label definition: ``label`` is the domain index in ``DOMAINS`` (an 8-way
domain classification task). Users' JSONL data may use any integer labels in
``[0, num_classes)``; ``domain`` is a free string naming the record's domain.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from gem.config import DOMAINS
from gem.errors import DataError


@dataclass(frozen=True)
class Sample:
    """One labelled text. ``label`` is an int class id, ``domain`` a domain name."""

    text: str
    label: int
    domain: str


# Templates are shared by all English domains so the model must read the
# domain words, not the sentence shape. {a} {b} {c} are domain slots.
_TEMPLATES: tuple[str, ...] = (
    "The {a} was reviewed together with the {b} before the {c}.",
    "Can you explain how the {a} affects the {b}?",
    "We noted that the {b} changed after the {a} and the {c}.",
    "Please summarise the {c} and list every {a} involved.",
    "According to the report, the {a} depends on the {b}.",
    "Yesterday the team discussed the {c}, the {b} and the {a}.",
    "Is the {a} still required when the {b} is missing?",
    "A short note about the {a}: check the {c} first.",
)

_VOCAB: dict[str, tuple[str, ...]] = {
    "healthcare": (
        "patient",
        "diagnosis",
        "dosage",
        "clinic",
        "symptom",
        "vaccine",
        "nurse",
        "blood pressure",
        "prescription",
        "cardiology ward",
        "MRI scan",
        "antibiotic",
    ),
    "law": (
        "contract",
        "plaintiff",
        "statute",
        "court ruling",
        "appeal",
        "liability clause",
        "defendant",
        "jurisdiction",
        "affidavit",
        "legal precedent",
        "indemnity",
        "tribunal",
    ),
    "finance": (
        "portfolio",
        "interest rate",
        "dividend",
        "balance sheet",
        "bond yield",
        "audit",
        "quarterly earnings",
        "hedge",
        "liquidity",
        "mortgage",
        "invoice",
        "exchange rate",
    ),
    "stem": (
        "equation",
        "molecule",
        "algorithm",
        "voltage",
        "integral",
        "protein folding",
        "neutron",
        "matrix",
        "compiler",
        "thermodynamics",
        "wavelength",
        "catalyst",
    ),
    "commonsense": (
        "umbrella",
        "kitchen",
        "breakfast",
        "rainy morning",
        "bicycle",
        "grocery list",
        "garden",
        "dog walk",
        "birthday cake",
        "laundry",
        "bus stop",
        "winter coat",
    ),
    "conversational": (
        "hey there",
        "thanks a lot",
        "how are you",
        "see you later",
        "no worries",
        "good morning",
        "what's up",
        "sounds great",
        "talk soon",
        "nice to meet you",
        "by the way",
        "just kidding",
    ),
    "domain-adaptive": (
        "crop rotation",
        "cargo manifest",
        "drone survey",
        "soil sample",
        "ship ballast",
        "irrigation valve",
        "wind turbine blade",
        "fish hatchery",
        "glacier core",
        "warehouse robot",
        "satellite telemetry",
        "beehive sensor",
    ),
}

# The multilingual domain uses its own sentences (non-English, several
# scripts) so the byte-level model sees multi-byte UTF-8.
_MULTILINGUAL: tuple[str, ...] = (
    "Le {a} est prêt, merci beaucoup pour votre aide.",
    "Der {a} ist größer als erwartet, schöne Grüße.",
    "El {a} llegó tarde, ¿puedes revisar la información?",
    "Il {a} è già pronto, grazie mille.",
    "今日は{a}について話しましょう。",
    "我们明天讨论{a}的问题。",
    "Сегодня мы обсуждаем {a} и погоду.",
    "Σήμερα μιλάμε για {a} και τον καιρό.",
    "오늘은 {a}에 대해 이야기합시다.",
    "Bugün {a} hakkında konuşuyoruz, teşekkürler.",
)
_MULTILINGUAL_WORDS: tuple[str, ...] = (
    "café",
    "Straße",
    "niño",
    "学校",
    "天気",
    "книга",
    "θάλασσα",
    "도서관",
    "çay",
    "fiore",
)


def generate_dataset(n_per_domain: int = 64, seed: int = 0) -> list[Sample]:
    """Deterministic multi-domain data set: ``n_per_domain`` samples per domain,
    interleaved by domain (sample i has label i % 8), same output for the same seed."""
    if n_per_domain < 1:
        raise ValueError(f"n_per_domain must be >= 1, got {n_per_domain}")
    rng = random.Random(seed)
    per_domain: list[list[Sample]] = []
    for label, domain in enumerate(DOMAINS):
        rows: list[Sample] = []
        for _ in range(n_per_domain):
            if domain == "multilingual":
                text = rng.choice(_MULTILINGUAL).format(a=rng.choice(_MULTILINGUAL_WORDS))
            else:
                a, b, c = rng.sample(_VOCAB[domain], 3)
                text = rng.choice(_TEMPLATES).format(a=a, b=b, c=c)
            rows.append(Sample(text=text, label=label, domain=domain))
        per_domain.append(rows)
    return [per_domain[d][i] for i in range(n_per_domain) for d in range(len(DOMAINS))]


def split(
    samples: list[Sample], holdout_fraction: float = 0.25
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic train/holdout split keeping the domain interleaving."""
    n_hold = int(len(samples) * holdout_fraction)
    return samples[: len(samples) - n_hold], samples[len(samples) - n_hold :]


def load_jsonl(path: str | Path, num_classes: int | None = None) -> list[Sample]:
    """Load users' records, one JSON object per line: {"text": str, "label": int, "domain": str}.

    Blank lines are skipped. Any problem raises DataError naming the file, the
    1-based line number and the missing or wrong key, so a user can fix the
    record directly. With ``num_classes`` labels must lie in [0, num_classes).
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    samples: list[Sample] = []
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(rec, dict):
            raise DataError(
                f"{where}: expected a JSON object with keys text, label, domain; "
                f"got {type(rec).__name__}"
            )
        for key, typ, desc in (
            ("text", str, "a string"),
            ("label", int, "an integer"),
            ("domain", str, "a string"),
        ):
            if key not in rec:
                raise DataError(f"{where}: missing key {key!r} (need text, label, domain)")
            value = rec[key]
            if not isinstance(value, typ) or isinstance(value, bool):
                raise DataError(
                    f"{where}: key {key!r} must be {desc}, got {type(value).__name__} {value!r}"
                )
        if not rec["text"]:
            raise DataError(f"{where}: key 'text' is empty")
        label = rec["label"]
        if label < 0 or (num_classes is not None and label >= num_classes):
            upper = f"{num_classes - 1}" if num_classes is not None else "..."
            raise DataError(f"{where}: key 'label' = {label} is outside [0, {upper}]")
        samples.append(Sample(text=rec["text"], label=label, domain=rec["domain"]))
    if not samples:
        raise DataError(f"{path}: no records (file is empty)")
    return samples


def samples_digest(samples: list[Sample]) -> str:
    """sha256 over every sample's text, label and domain, in order: names a
    hold-out exactly, so per-example references recorded at build time can be
    matched to the same examples later (the on-device eval benchmark)."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.text}\0{s.label}\0{s.domain}\n".encode())
    return h.hexdigest()
