"""Sentences and object noun phrases of a caption, as character spans of the original text.

The noun-phrase chunker is rule-based (no tagger model to download): a phrase is an optional
determiner/quantifier, a chain of modifiers and a head noun, and it ends at punctuation,
prepositions, conjunctions, pronouns and verbs from a lexicon of the words captioners use.
Heads that name no object (image, background, atmosphere, the left, a group ...) are dropped,
so what remains is what an image-text model can be asked to find in the picture.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    text: str
    start: int   # character offsets into the caption: caption[start:end] == text
    end: int


@functools.cache
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def sentences(text: str) -> list[Span]:
    """The caption's sentences, split by pysbd (rule-based, knows abbreviations such as "Dr.",
    "St." or "p.m." and numbered items), as exact spans of the text."""
    return list(_sentences(text or ""))


@functools.lru_cache(maxsize=64)   # the checks of one caption ask for its sentences several times
def _sentences(text: str) -> tuple[Span, ...]:
    spans, pos = [], 0
    for segment in _segmenter().segment(text) if text.strip() else []:
        piece = segment.strip()
        start = text.find(piece, pos)
        if not piece or start < 0:
            continue
        spans.append(Span(piece, start, start + len(piece)))
        pos = start + len(piece)
    return tuple(spans)


# Quoted text: "..", “..”, «..», 「..」, and single quotes that are not apostrophes
# (an opening quote follows no letter, a closing one precedes none).
_QUOTED = re.compile(
    r'"(?P<a>[^"\n]{1,200})"'
    r"|“(?P<b>[^”\n]{1,200})”"
    r"|«(?P<c>[^»\n]{1,200})»"
    r"|「(?P<d>[^」\n]{1,200})」"
    r"|(?<!\w)'(?P<e>(?:[^'\n]|(?<=\w)'(?=\w)){1,120}?)'(?!\w)"
    r"|(?<!\w)‘(?P<f>[^‘\n]{1,120}?)’(?!\w)"
)


def quoted(text: str) -> list[Span]:
    """Quoted strings (without their quote marks) that contain a letter or digit."""
    spans = []
    for m in _QUOTED.finditer(text):
        group = next(g for g in "abcdef" if m.group(g) is not None)
        inner, start = m.group(group), m.start(group)
        lead = len(inner) - len(inner.lstrip())
        inner = inner.strip()
        if any(ch.isalnum() for ch in inner):
            spans.append(Span(inner, start + lead, start + lead + len(inner)))
    return spans


def _words(*groups: str) -> frozenset[str]:
    return frozenset(w for g in groups for w in g.split())


_NUMBERS = _words("one two three four five six seven eight nine ten eleven twelve thirteen "
                  "fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty "
                  "hundred hundreds thousands dozens dozen")
DETERMINERS = _words("a an the this these those another each every some several many few "
                     "multiple various numerous both all his her its their our my your other "
                     "more most") | _NUMBERS
PREPOSITIONS = _words("in on at near beside besides behind with without of under underneath above "
                      "over from by to into onto across along alongside around between through "
                      "against among amid amidst beneath below inside outside toward towards next "
                      "atop during within like for via upon about up down off out past throughout "
                      "before after beyond opposite except than including featuring adjacent")
CONJUNCTIONS = _words("and or but nor yet so while whereas as that which who whom whose where when "
                      "if because although though since until whether either neither")
PRONOUNS = _words("it they them he she him we us you i me there here what something someone "
                  "somebody anything anyone everything everyone nothing nobody itself themselves "
                  "himself herself one ones")
COPULAS = _words("is are was were be been being am appears appear appeared seems seem seemed looks "
                 "look remains remain feels feel becomes become stays")
# Verbs captioners use, finite and -ing forms. Regular -ed participles are left out on purpose:
# before a noun they are modifiers ("a framed painting"); after one they are trimmed.
VERBS = _words(
    "has have had having do does did can could may might will would shall should must "
    "shows show showing showcases showcase depicts depict depicting features displays "
    "displaying presents captures capture capturing portrays portray illustrates illustrating "
    "contains contain containing includes include creates create creating adds add adding "
    "gives give giving suggests suggest suggesting indicates indicate conveys convey evokes evoke "
    "see sees seeing seen stands stand standing stood sits sit sitting sat lies lie lying lay "
    "walks walk walking wears wear wearing holds hold holding held runs run running plays play "
    "playing looking smiles smile smiling laughs laughing rides ride riding eats eat eating "
    "drinks drinking leans lean leaning hangs hang hanging hung flying swims swim swimming "
    "facing carries carry carrying talks talk talking chatting waits wait waiting resting "
    "sleeps sleep sleeping kneels kneeling crouches crouching bends bending reaches reaching "
    "reads read reading says say saying writes writing written works working cooks cooking "
    "surrounds surround surrounding covering fills filling made reflects reflecting "
    "casts cast casting grows growing extends extending stretches stretching leads leading "
    "points pointing appearing gazes gazing stares staring watching poses posing dances dancing "
    "jumps jumping climbs climbing crosses moves moving drives driving pulls pulling pushes "
    "pushing uses using makes making takes taking gets getting rises rising falls falling "
    "floats floating flows flowing streams streaming pours pouring grazes grazing hovers "
    "hovering soars soaring sails sailing overlooks overlooking spans spanning occupies "
    "occupying dominates dominating framing highlighting emphasizes emphasizing emphasises "
    "enhances enhancing complements complementing contrasts contrasting blends blending "
    "shine shines shining glows glowing sparkles sparkling glistens glistening illuminates "
    "illuminating peeks peeking sway sways swaying bloom blooms blooming float flow glisten "
    "sparkle hover soar gather gathers gathering stroll strolls strolling wander wanders "
    "wandering roam roams roaming leaving rests"
)
ADVERBS = _words("very quite rather fairly extremely slightly somewhat also too just only not "
                 "even still almost nearly mostly partly partially perhaps possibly probably "
                 "likely clearly well together apart away back again here there then now "
                 "further closer close far sure certainly yes okay ok indeed")
ADJECTIVES = _words(
    "red orange yellow green blue purple violet pink brown black white gray grey golden silver "
    "beige tan teal turquoise navy maroon crimson dark bright pale pastel vibrant vivid "
    "colorful colourful muted dull shiny glossy matte transparent clear cloudy sunny foggy misty "
    "big small large little tiny huge giant massive tall short long wide narrow thick thin "
    "high low deep shallow round rectangular circular oval flat curved straight "
    "old new young modern ancient vintage antique rustic wooden metallic "
    "soft hard smooth rough warm cool cold hot wet dry fresh clean dirty "
    "empty full open closed busy quiet calm serene peaceful tranquil cozy cosy natural urban rural "
    "beautiful pretty lovely elegant simple plain ornate intricate detailed blurry blurred sharp "
    "visible prominent central main various different same similar distinct overall entire whole "
    "left right top bottom middle upper lower front rear inner outer nearby distant "
    "happy sad casual formal striking stunning picturesque lush dense sparse bare vast "
    "other such own several additional single double multiple many few"
)
# Heads that name no object to look for in the picture.
ABSTRACT = _words(
    "image picture photo photograph photography shot snapshot scene view setting background "
    "foreground backdrop atmosphere ambiance ambience mood vibe feel feeling tone style "
    "composition aesthetic aesthetics colour color colours colors hue hues palette tones shade "
    "shades contrast lighting detail details focus sense impression theme element elements "
    "overall perspective angle frame close-up closeup depth texture textures pattern patterns "
    "appearance look design quality emphasis essence beauty charm character nature moment "
    "time day night daytime nighttime evening morning afternoon dusk dawn twilight season "
    "side part center centre middle top bottom left right edge corner front back rear "
    "distance position area space surroundings environment location place spot region "
    "portion section half rest majority kind sort type variety number lot lots pair group "
    "couple bunch collection set row rows series range mix mixture array assortment handful "
    "amount plenty glow warmth presence sight way manner fact motion movement action activity "
    "illustration artwork rendering depiction representation visual visuals viewer "
    "caption description text"
)
# Words ending like adverbs, participles or adjectives that are nevertheless object nouns.
_LY_NOUNS = _words("family butterfly dragonfly jelly belly lily holly assembly supply trolley "
                   "alley valley pulley gully")
_ED_NOUNS = ("bed", "shed", "sled", "seed", "weed", "reed", "steed", "tweed", "speed", "breed",
             "hundred", "sofabed")
_ADJ_SUFFIXES = ("ous", "ful", "less", "ish", "esque")

_TOKEN = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")
_POSSESSIVE = re.compile(r"['’]s?$")


def _is_adverb(w: str) -> bool:
    return w in ADVERBS or (w.endswith("ly") and len(w) > 4 and w not in _LY_NOUNS)


def _is_participle(w: str) -> bool:
    return w.endswith("ed") and len(w) > 4 and not w.endswith(_ED_NOUNS)


def _noun_head(w: str) -> bool:
    """Whether `w` (lowercase, possessive stripped) may head an object noun phrase."""
    if not w or w.isdigit() or w in ADJECTIVES or _is_adverb(w) or _is_participle(w):
        return False
    if w.endswith(_ADJ_SUFFIXES) and len(w) > 5:
        return False
    singular = w[:-1] if w.endswith("s") and not w.endswith("ss") else w
    return w not in ABSTRACT and singular not in ABSTRACT


SINGULAR_DETERMINERS = _words("a an this that another each every one")


def _third_person_verb(determiner: str, content: list[re.Match]) -> bool:
    """After a singular determiner and a noun, a last word in -s is a verb the lexicon lacks:
    "a" never takes a plural noun ("a red bus passes", "the" is ambiguous and left alone)."""
    last, before = content[-1].group().lower(), content[-2].group().lower()
    return (determiner in SINGULAR_DETERMINERS and last.endswith("s") and not last.endswith(("ss", "us", "is"))
            and before not in ADJECTIVES)


def _is_determiner(w: str) -> bool:
    return w in DETERMINERS or w.isdigit()


def _has_content(run: list[re.Match]) -> bool:
    return not all(_is_determiner(t.group().lower()) for t in run)


def noun_phrases(text: str) -> list[Span]:
    """Object noun phrases of `text` (quoted strings excluded), first occurrence of each
    (case-insensitive), in order of appearance."""
    text = text or ""
    masked = list(text)
    for q in quoted(text):  # claimed text is an OCR question, not an object
        masked[q.start:q.end] = " " * (q.end - q.start)
    masked_text = "".join(masked)

    found: list[Span] = []
    seen: set[str] = set()
    run: list[re.Match] = []
    predicate = False  # after a copula, bare words are predicates ("is calm and serene")

    def flush() -> None:
        nonlocal run
        words, run = run, []
        while words and (_is_adverb(words[-1].group().lower())
                         or _is_participle(words[-1].group().lower())):
            words.pop()  # "a bus parked neatly"
        n_det = 0
        while n_det < len(words) and _is_determiner(words[n_det].group().lower()):
            n_det += 1
        content = words[n_det:]
        if not content:
            return
        if n_det and len(content) >= 2 and _third_person_verb(words[0].group().lower(), content):
            words, content = words[:-1], content[:-1]   # "A red bus passes" -> "A red bus"
        head = _POSSESSIVE.sub("", content[-1].group().lower())
        if not _noun_head(head):
            return
        if not n_det and (predicate or (len(content) == 1 and head.endswith("ing"))):
            return
        start, end = words[0].start(), words[-1].end()
        phrase = text[start:end]
        key = " ".join(phrase.casefold().split())
        if key not in seen:
            seen.add(key)
            found.append(Span(phrase, start, end))

    for m in _TOKEN.finditer(masked_text):
        w = m.group().lower()
        if not (w[0].isalnum() or w[0] == "_"):  # punctuation
            flush()
            if w in ".!?;:":
                predicate = False
        elif _is_determiner(w):
            if _has_content(run):
                flush()  # a determiner opens a new phrase
            run.append(m)
            predicate = False
        elif w in COPULAS:
            flush()
            predicate = True
        elif w in VERBS and w.endswith("ing") and run and not _has_content(run):
            run.append(m)  # right after a determiner an -ing word is a modifier: "a hanging lamp"
        elif w in PREPOSITIONS or w in VERBS or w in PRONOUNS:
            flush()
            predicate = False
        elif w in CONJUNCTIONS:
            flush()
        else:
            run.append(m)
    flush()
    return found
