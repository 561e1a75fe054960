"""GEM's real multi-domain text, read at build time from installed Debian packages.

Nothing here is third-party text: this module holds the *loader*, the *label
mapping* and the *manifest of sources* (:data:`SOURCES`, with licences). The
text itself is read from the packages listed in scripts/debian-packages.txt
(CI installs them); when one is missing, :func:`load_corpus` raises
:class:`CorpusMissingError` naming the package and the install command, and
tests skip with that reason (``GEM_HIL_REQUIRE=1`` turns the skip into a
failure).

Sources and how they become the eight domains (``gem.config.DOMAINS``):

* **WordNet 3.0** (``wordnet-base``): one *document* per synset, text =
  ``"lemma, lemma: gloss; \\"example\\""``. Labels come from WordNet's own
  topic-domain pointers (``;c``: e.g. *medicine*, *law*, *finance*), inherited
  down the hypernym tree (a drug whose hypernym *medication* is in the
  *medicine* domain is healthcare), mapped to GEM's domains by the family
  tables below; *conversational* from WordNet's usage-domain pointers
  (``;u`` colloquialism, slang, ...) and from examples spoken in the first or
  second person; *commonsense* from everyday lexicographer files (food,
  eating, body care, weather, motion) with no topic domain;
  *domain-adaptive* from the specialised topic domains GEM is adapted to
  (military, music, sport, seafaring, farming, aviation, ...).
* **gettext catalogues** (``coreutils``, ``bash``, ``apt``): the translated
  messages (``msgstr``) of every non-English ``.mo`` file; one *document* per
  catalogue (package x language), so a held-out catalogue is never seen in
  training. This is the *multilingual* domain (about 80 languages, several
  scripts and many Latin-script languages, so non-ASCII bytes alone do not
  solve it).

Splits are by source document (a stable hash of its id), then near-duplicates
of training text are removed from the hold-out (:func:`split_corpus`), which
tests/unit/test_gem_corpus.py checks independently (char-shingle Jaccard).
"""

from __future__ import annotations

import gettext
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gem.config import DOMAINS
from gem.data import Sample
from gem.errors import DataError

WORDNET_DIR = Path(os.environ.get("GEM_HIL_WORDNET_DIR", "/usr/share/wordnet"))
LOCALE_DIR = Path(os.environ.get("GEM_HIL_LOCALE_DIR", "/usr/share/locale"))
CATALOGUES = ("coreutils", "bash", "apt")

#: The manifest of sources: Debian package, what is read, licence, domains fed.
SOURCES: tuple[dict[str, str], ...] = (
    {
        "package": "wordnet-base",
        "files": "/usr/share/wordnet/data.{noun,verb,adj,adv}",
        "licence": "WordNet 3.0 licence (Princeton University; permissive, BSD-like; "
        "/usr/share/doc/wordnet-base/copyright)",
        "domains": "healthcare, law, finance, stem, commonsense, conversational, "
        "domain-adaptive",
    },
    *(
        {
            "package": pkg,
            "files": f"/usr/share/locale/*/LC_MESSAGES/{pkg}.mo",
            "licence": lic,
            "domains": "multilingual",
        }
        for pkg, lic in (
            ("coreutils", "GPL-3+ (/usr/share/doc/coreutils/copyright)"),
            ("bash", "GPL-3+ (/usr/share/doc/bash/copyright)"),
            ("apt", "GPL-2+ (/usr/share/doc/apt/copyright)"),
        )
    ),
)

# WordNet topic-domain synsets (by first lemma, lower case) -> GEM domain. A topic
# synset not listed inherits from its own hypernyms (cardiology -> medicine).
_FAMILIES: dict[str, tuple[str, ...]] = {
    "healthcare": (
        "medicine", "pathology", "surgery", "pharmacology", "physiology", "anatomy",
        "dentistry", "psychiatry", "obstetrics", "medical_science", "immunology",
        "ophthalmology", "neurology", "oncology", "nursing", "veterinary_medicine",
        "disease", "drug", "medication", "pharmacy", "gynecology", "pediatrics",
        "radiology", "cardiology", "dermatology", "orthopedics", "psychotherapy",
    ),
    "law": (
        "law", "jurisprudence", "criminal_law", "civil_law", "crime", "legal_document",
        "court", "police", "lawyer", "legislation", "international_law",
    ),
    "finance": (
        "finance", "banking", "economics", "commerce", "commercial_enterprise", "tax",
        "stock_exchange", "accounting", "investing", "investment", "insurance", "money",
        "business", "bank", "securities", "stock_market", "monetary_unit", "trade",
    ),
    "stem": (
        "physics", "chemistry", "mathematics", "computer_science", "biology", "genetics",
        "statistics", "geology", "astronomy", "electronics", "engineering", "biochemistry",
        "geometry", "arithmetic", "optics", "electricity", "cosmology", "meteorology",
        "computer", "telecommunication", "logic", "zoology", "botany", "ecology",
        "science", "natural_science", "algebra", "calculus", "mechanics", "thermodynamics",
        "nuclear_physics", "crystallography", "microbiology", "cytology", "biophysics",
    ),
    "commonsense": ("cooking", "driving", "cookery", "sewing", "gardening", "housekeeping"),
    "domain-adaptive": (
        "military", "music", "sport", "seafaring", "nautical", "photography", "architecture",
        "farming", "agriculture", "air_travel", "aviation", "navigation", "printing",
        "mining", "ship", "boat", "heraldry", "handicraft", "baseball", "golf", "football",
        "basketball", "tennis", "cricket", "soccer", "ice_hockey", "boxing", "chess",
        "card_game", "performing_arts", "theater", "dancing", "animal_husbandry", "riding",
        "airplane", "aircraft", "car", "forestry", "fishing", "textile", "weaving",
    ),
}
_USAGE_CONVERSATIONAL = frozenset(
    ("colloquialism", "slang", "intensifier", "euphemism", "idiom", "formality", "wit",
     "irony", "regionalism", "dialect")
)
_LEX_COMMONSENSE = frozenset(("13", "29", "34", "38", "43", "35"))  # food, body, eat, motion...
_FIRST_SECOND_PERSON = re.compile(r"\b(I|I'm|I'll|I've|you|you're|we|we're|let's|my|your)\b")
_HYPERNYM = ("@", "@i")


class CorpusMissingError(DataError):
    """A Debian package the corpus is read from is not installed."""


@dataclass(frozen=True)
class Doc:
    """One source document: its id (stable across builds), domain and text."""

    doc_id: str
    domain: str
    text: str


@dataclass
class Corpus:
    """The labelled split: train and hold-out samples plus where they came from."""

    train: list[Sample]
    holdout: list[Sample]
    train_ids: list[str] = field(default_factory=list)
    holdout_ids: list[str] = field(default_factory=list)
    dropped_near_duplicates: int = 0

    def summary(self) -> dict:
        """Counts per split and domain (for the artifact manifest and docs)."""
        def per(samples: list[Sample]) -> dict[str, int]:
            return {d: sum(1 for s in samples if s.domain == d) for d in DOMAINS}

        return {
            "sources": [dict(s) for s in SOURCES],
            "train": per(self.train),
            "holdout": per(self.holdout),
            "holdout_dropped_near_duplicates": self.dropped_near_duplicates,
            "split": "by source document (sha256 of its id), near-duplicates of train "
            "removed from hold-out",
        }


def _missing(package: str, what: Path) -> CorpusMissingError:
    return CorpusMissingError(
        f"{what}: not found; GEM's corpus reads it from the Debian package {package!r} "
        f"(scripts/debian-packages.txt). Install it: "
        f"apt-get install --no-install-recommends {package}"
    )


def fingerprint() -> dict[str, list[int]]:
    """(size, mtime_ns) of every source file: part of the artifact cache key, so a
    new package version rebuilds the artifact; cheap (stat only)."""
    out: dict[str, list[int]] = {}
    for p in _source_files():
        st = p.stat()
        out[str(p)] = [st.st_size, st.st_mtime_ns]
    return out


def available() -> str | None:
    """None when every source is installed, else the reason (for pytest.skip)."""
    try:
        _source_files()
    except CorpusMissingError as exc:
        return str(exc)
    return None


def _source_files() -> list[Path]:
    files = [WORDNET_DIR / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    for f in files:
        if not f.is_file():
            raise _missing("wordnet-base", f)
    for pkg in CATALOGUES:
        found = sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{pkg}.mo"))
        if len(found) < 5:
            raise _missing(pkg, LOCALE_DIR / f"*/LC_MESSAGES/{pkg}.mo")
        files.extend(found)
    return files


# --------------------------------------------------------------------- WordNet


@dataclass
class _Synset:
    pos: str
    lex: str
    words: list[str]
    ptrs: list[tuple[str, str]]  # (symbol, key)
    gloss: str


def _read_wordnet(folder: Path) -> dict[str, _Synset]:
    pos_of = {"n": "n", "v": "v", "a": "a", "s": "a", "r": "r"}
    out: dict[str, _Synset] = {}
    for name, pos in (("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r")):
        path = folder / f"data.{name}"
        if not path.is_file():
            raise _missing("wordnet-base", path)
        with path.open(encoding="latin-1") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.startswith("  "):  # licence header
                    continue
                head, _, gloss = line.partition(" | ")
                f = head.split()
                try:
                    w = int(f[3], 16)
                    words = [f[4 + 2 * i] for i in range(w)]
                    i = 4 + 2 * w
                    ptrs = []
                    for _ in range(int(f[i])):
                        ptrs.append((f[i + 1], f"{pos_of[f[i + 3]]}{f[i + 2]}"))
                        i += 4
                except (IndexError, ValueError, KeyError) as exc:
                    raise DataError(f"{path}:{lineno}: not a WordNet data line ({exc})") from None
                out[f"{pos}{f[0]}"] = _Synset(pos, f[1], words, ptrs, gloss.strip())
    return out


def _family_of_name(syn: _Synset) -> str | None:
    for word in syn.words:
        w = word.lower()
        for fam, names in _FAMILIES.items():
            if w in names:
                return fam
    return None


def _inherited(
    syn: dict[str, _Synset], own: Callable[[_Synset], str | None], max_depth: int
) -> Callable[[str], str | None]:
    """key -> ``own(synset)``, else the first hypernym's inherited value (memoised,
    cycle-safe, at most ``max_depth`` levels up)."""
    memo: dict[str, str | None] = {}

    def find(key: str, depth: int = 0) -> str | None:
        if key in memo:
            return memo[key]
        memo[key] = None  # cycle guard
        s = syn[key]
        fam = own(s)
        if fam is None and depth < max_depth:
            for sym, k in s.ptrs:
                if sym in _HYPERNYM and (fam := find(k, depth + 1)):
                    break
        memo[key] = fam
        return fam

    return find


def _wordnet_docs(folder: Path) -> list[Doc]:
    syn = _read_wordnet(folder)
    # family of a topic-domain synset: by its name, else its hypernyms'
    topic_family = _inherited(syn, _family_of_name, 8)

    def own_topic(s: _Synset) -> str | None:
        for sym, k in s.ptrs:
            if sym == ";c" and (fam := topic_family(k)):
                return fam
        return None

    # topic family of any synset, inherited from its hypernyms (nearest wins)
    domain = _inherited(syn, own_topic, 12)

    docs: list[Doc] = []
    for key, s in syn.items():
        lemmas = ", ".join(w.replace("_", " ") for w in s.words[:3])
        text = f"{lemmas}: {s.gloss}"
        fam = domain(key)
        usage = {syn[k].words[0].lower() for sym, k in s.ptrs if sym == ";u"}
        if fam is None and usage & _USAGE_CONVERSATIONAL:
            fam = "conversational"
        if fam is None:
            examples = re.findall(r'"([^"]{12,})"', s.gloss)
            spoken = [e for e in examples if _FIRST_SECOND_PERSON.search(e)]
            if spoken:
                fam, text = "conversational", " ".join(spoken)
            elif s.lex in _LEX_COMMONSENSE:
                fam = "commonsense"
        if fam is not None:
            docs.append(Doc(f"wordnet:{key}", fam, text))
    return docs


# --------------------------------------------------------------------- gettext


def _catalogue_docs(locale_dir: Path, packages: Iterable[str]) -> list[Doc]:
    docs: list[Doc] = []
    for pkg in packages:
        files = sorted(locale_dir.glob(f"*/LC_MESSAGES/{pkg}.mo"))
        if len(files) < 5:
            raise _missing(pkg, locale_dir / f"*/LC_MESSAGES/{pkg}.mo")
        for path in files:
            lang = path.parent.parent.name
            if lang.startswith("en"):
                continue  # English variants are not multilingual text
            try:
                with path.open("rb") as fh:
                    catalogue = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: unreadable gettext catalogue ({exc})") from None
            msgs = []
            for k, v in catalogue.items():
                src = k[0] if isinstance(k, tuple) else k
                if not src or not isinstance(v, str):
                    continue  # header entry
                t = " ".join(v.split())
                if 24 <= len(t) <= 400 and t != " ".join(src.split()):
                    msgs.append(t)
            # one document per catalogue: every message shares its doc id
            docs.extend(Doc(f"gettext:{pkg}:{lang}", "multilingual", t) for t in sorted(set(msgs)))
    return docs


# ----------------------------------------------------------------- splitting


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _bucket(doc_id: str) -> int:
    return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:4], "big")


def word_ngrams(text: str, n: int = 4) -> set[str]:
    w = _normalise(text).split()
    if len(w) < n:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def split_corpus(
    docs: list[Doc],
    holdout_fraction: float = 0.2,
    per_domain: int | None = None,
    seed: int = 0,
    near_dup_containment: float = 0.5,
) -> Corpus:
    """Split by source document (hash of ``doc_id`` with ``seed``), balanced to
    at most ``per_domain`` texts per domain (deterministic choice), then drop
    hold-out texts that duplicate training text: same normalised text, or at
    least ``near_dup_containment`` of their word 4-grams occurring in training."""
    seen: set[str] = set()
    uniq: list[Doc] = []
    for d in sorted(docs, key=lambda d: (_bucket(f"{seed}:{d.doc_id}:{d.text}"), d.text)):
        norm = _normalise(d.text)
        if norm and norm not in seen:
            seen.add(norm)
            uniq.append(d)
    cut = int(holdout_fraction * 1000)
    train_docs, hold_docs = [], []
    counts_t: dict[str, int] = {}
    counts_h: dict[str, int] = {}
    cap_h = None if per_domain is None else max(1, round(per_domain * holdout_fraction))
    cap_t = None if per_domain is None else per_domain - (cap_h or 0)
    for d in uniq:
        held = _bucket(f"{seed}:{d.doc_id}") % 1000 < cut
        bucket, counts, cap = (
            (hold_docs, counts_h, cap_h) if held else (train_docs, counts_t, cap_t)
        )
        if cap is not None and counts.get(d.domain, 0) >= cap:
            continue
        counts[d.domain] = counts.get(d.domain, 0) + 1
        bucket.append(d)
    train_grams: set[str] = set()
    for d in train_docs:
        train_grams |= word_ngrams(d.text)
    kept, dropped = [], 0
    for d in hold_docs:
        g = word_ngrams(d.text)
        if g and len(g & train_grams) / len(g) >= near_dup_containment:
            dropped += 1
            continue
        kept.append(d)
    label = {name: i for i, name in enumerate(DOMAINS)}

    def samples(ds: list[Doc]) -> list[Sample]:
        return [Sample(text=d.text, label=label[d.domain], domain=d.domain) for d in ds]

    return Corpus(
        train=samples(train_docs),
        holdout=samples(kept),
        train_ids=[d.doc_id for d in train_docs],
        holdout_ids=[d.doc_id for d in kept],
        dropped_near_duplicates=dropped,
    )


def load_docs() -> list[Doc]:
    """Every labelled document from the installed sources (raises
    CorpusMissingError naming the package when one is missing)."""
    return _wordnet_docs(WORDNET_DIR) + _catalogue_docs(LOCALE_DIR, CATALOGUES)


def load_corpus(per_domain: int | None = 1000, seed: int = 0) -> Corpus:
    """The labelled train/hold-out split GEM builds from (see module docstring)."""
    return split_corpus(load_docs(), per_domain=per_domain, seed=seed)
