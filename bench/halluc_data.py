"""The generated set of bench/halluc: rendered text in eight conditions with right and wrong
claims about it, and captions with each kind of degeneration beside clean dense ones.
Fixed seed; nothing downloaded (DejaVu fonts when the system has them, else Pillow's own)."""

from __future__ import annotations

import glob
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CONDITIONS = ["sign", "poster", "book_cover", "shirt", "multiline", "rotated", "low_contrast", "small"]
CLAIM_KINDS = ["right", "one_letter", "two_letters", "different_word", "extra_word"]

# Words a sign, poster, cover or shirt might carry; near misses are made by editing letters.
WORDS = """BAKERY PHARMACY LIBRARY MUSEUM STATION GARDEN HARBOUR MARKET THEATRE COFFEE Welcome
Parking Hotel Pizza Bookshop Fresh Bread City Hall Open Daily Flower Shop Ice Cream Exit Bicycle
Laundry Gallery Bistro Tickets Harvest Sunrise Dental Clinic Post Office Summer Festival Jazz Night
Farmers Market Vintage Records Grand Opening Closed Sunday Ocean Breeze Mountain Trail Silent Forest
The Last Winter Hidden Garden River Song Morning Light Brooklyn Tokyo Paris Berlin Lisbon Seattle
Rescue Team Good Vibes Stay Wild Coffee First Dream Big Kitchen Garage Sale Free Wifi Books Toys
Bridge Castle Lantern Orchard Meadow Harbor Velvet Copper Marble Willow Falcon Thunder Glacier
Canyon Prairie Island Valley Village Pioneer Chapter Legend Empire Kingdom""".split()
EXTRA = ["Cafe", "Shop", "Club", "House", "Center", "Company", "Store", "Studio", "Bar", "Inn"]
FONTS = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/DejaVu*.ttf"))
LETTERS = "abcdefghijklmnopqrstuvwxyz"

CLAIM_TEMPLATES = [
    'A storefront with a sign that reads "{t}" above the entrance.',
    "A poster on a wall with the words {t} printed in large letters.",
    "A wooden board labeled '{t}' leans against a fence.",
    "A banner that says {t} hangs over the street.",
    "A close-up of a label with the text “{t}”.",
    'The cover shows the title "{t}" in bold type.',
    'A T-shirt printed with "{t}" across the chest.',
]


@dataclass
class TextCase:
    image: Image.Image
    condition: str            # one of CONDITIONS, or "no_text"
    text: str                 # the text rendered ("" for no_text)
    claims: dict[str, str]    # claim kind -> caption


def _font(index: int, px: int) -> ImageFont.FreeTypeFont:
    if FONTS:
        return ImageFont.truetype(FONTS[index % len(FONTS)], px)
    return ImageFont.load_default(size=px)


def _fitting_font(index: int, px: int, lines: list[str], width: int) -> ImageFont.FreeTypeFont:
    """The font at `px`, or smaller until the widest line fits `width` (text is never cut off)."""
    while True:
        font = _font(index, px)
        if px <= 10 or _text_block(lines, font, 10, (0, 0, 0, 255)).width <= width:
            return font
        px = int(px * 0.9)


def photo_like(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Smooth colour blobs, a few soft shapes and grain: busy like a photograph, no text."""
    w, h = size
    blobs = Image.fromarray((rng.random((7, 11, 3)) * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
    draw = ImageDraw.Draw(blobs)
    for _ in range(rng.integers(2, 6)):
        x, y = rng.integers(0, w), rng.integers(0, h)
        r = int(rng.integers(20, max(21, min(w, h) // 4)))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    grain = rng.integers(-18, 19, (h, w, 3), dtype=np.int16)
    return Image.fromarray((np.asarray(blobs, np.int16) + grain).clip(0, 255).astype(np.uint8))


def _luma(img: Image.Image, box) -> float:
    under = np.asarray(img.crop(box), np.float32).reshape(-1, 3)
    return float((under @ np.array([0.299, 0.587, 0.114], np.float32)).mean())


def _text_block(lines: list[str], font, spacing: int, fill, stroke=None, stroke_px=0, pad=8) -> Image.Image:
    """RGBA image of the lines (centred), transparent around them."""
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    box = probe.multiline_textbbox((0, 0), "\n".join(lines), font=font, spacing=spacing, align="center",
                                   stroke_width=stroke_px)
    block = Image.new("RGBA", (int(box[2]) + 2 * pad, int(box[3]) + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(block).multiline_text((pad, pad), "\n".join(lines), font=font, fill=fill, spacing=spacing,
                                         align="center", stroke_width=stroke_px, stroke_fill=stroke)
    return block


def _contrasting(rng, luma: float) -> tuple[int, int, int]:
    hue = rng.integers(0, 70, 3)
    return tuple(int(v) for v in (hue if luma > 128 else 255 - hue))


def render(rng: np.random.Generator, condition: str, text: str) -> Image.Image:
    size = [(1024, 768), (800, 600), (960, 720), (1280, 720), (768, 768)][rng.integers(5)]
    if condition == "book_cover":
        size = (600, 900)
    img = photo_like(rng, size)
    w, h = size
    words = text.split()
    lines = [text]
    if condition == "multiline" and len(words) >= 2:
        cut = int(rng.integers(1, len(words)))
        lines = [" ".join(words[:cut]), " ".join(words[cut:])]
    px = {"sign": (40, 90), "poster": (50, 110), "book_cover": (44, 80), "shirt": (30, 60), "multiline": (34, 70),
          "rotated": (40, 80), "low_contrast": (40, 90), "small": (13, 22)}[condition]
    font_file, font_px = int(rng.integers(max(1, len(FONTS)))), int(rng.integers(*px))
    font = _fitting_font(font_file, font_px, lines, w - 40 - (120 if condition == "shirt" else 0))
    angle = float(rng.choice([-1, 1]) * rng.uniform(12, 35)) if condition == "rotated" else 0.0

    if condition in ("sign", "poster", "book_cover", "shirt"):
        panel = tuple(int(v) for v in rng.integers(0, 256, 3))
        probe = _text_block(lines, font, 10, (0, 0, 0, 255))
        pw, ph = min(w - 10, probe.width + 60), min(h - 10, probe.height + 50)
        if condition == "book_cover":
            pw, ph = w, h
            img = Image.new("RGB", size, panel)
            img.paste(photo_like(rng, (w - 80, h // 2)), (40, h // 2 - 40))
        x0, y0 = int(rng.integers(0, max(1, w - pw))), int(rng.integers(0, max(1, h - ph)))
        if condition == "shirt":  # a shirt: a body with sleeves, the print across the chest
            d = ImageDraw.Draw(img)
            d.polygon([(x0, y0 + 40), (x0 + pw // 4, y0), (x0 + 3 * pw // 4, y0), (x0 + pw, y0 + 40),
                       (x0 + pw - 30, y0 + 80), (x0 + pw - 40, y0 + 70), (x0 + pw - 40, y0 + ph + 80),
                       (x0 + 40, y0 + ph + 80), (x0 + 40, y0 + 70), (x0 + 30, y0 + 80)], fill=panel)
        elif condition != "book_cover":
            ImageDraw.Draw(img).rectangle((x0, y0, x0 + pw, y0 + ph), fill=panel,
                                          outline=(30, 30, 30), width=int(rng.integers(0, 6)))
        fill = _contrasting(rng, sum(np.array(panel) * [0.299, 0.587, 0.114]))
        block = _text_block(lines, font, 10, (*fill, 255))
        if condition == "book_cover":
            x, y = (w - block.width) // 2, int(rng.integers(20, max(21, h // 3)))
        else:
            x, y = x0 + (pw - block.width) // 2, y0 + (ph - block.height) // 2 + (30 if condition == "shirt" else 0)
        img.paste(block, (max(0, x), max(0, y)), block)
        return img

    probe = _text_block(lines, font, 10, (0, 0, 0, 255))
    if angle:
        probe = probe.rotate(angle, expand=True)
    x = int(rng.integers(0, max(1, w - probe.width)))
    y = int(rng.integers(0, max(1, h - probe.height)))
    luma = _luma(img, (x, y, x + probe.width, y + probe.height))
    if condition == "low_contrast":
        grey = int(np.clip(luma + (-1 if luma > 128 else 1) * rng.uniform(45, 70), 0, 255))
        block = _text_block(lines, font, 10, (grey, grey, grey, 255))
    else:  # outlined so it stays legible over the busy background, as overlay text usually is
        fill = _contrasting(rng, luma)
        stroke = (0, 0, 0) if sum(fill) > 384 else (255, 255, 255)
        block = _text_block(lines, font, 10, (*fill, 255), stroke, max(1, int(font.size) // 20))
    if angle:
        block = block.rotate(angle, expand=True, resample=Image.BICUBIC)
    img.paste(block, (x, y), block)
    return img


def edit(rng: np.random.Generator, word: str, letters: int) -> str:
    """`word` with `letters` letters changed (substituted, dropped or doubled), never back to
    itself; the case of each changed letter follows its neighbour's."""
    for _ in range(50):
        chars = list(word)
        spots = rng.choice([i for i, c in enumerate(chars) if c.isalpha()], size=letters, replace=False)
        for i in sorted(spots, reverse=True):
            op = rng.integers(3) if len(chars) > 3 else 0
            c = chars[i]
            new = LETTERS[rng.integers(26)]
            new = new.upper() if c.isupper() else new
            if op == 0 and new.lower() != c.lower():
                chars[i] = new
            elif op == 1:
                del chars[i]
            else:
                chars.insert(i, new)
        out = "".join(chars)
        if out.casefold() != word.casefold() and _distance(out.casefold(), word.casefold()) == letters:
            return out
    raise ValueError(word)


def _distance(a: str, b: str) -> int:
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(a, b)


def _claim_texts(rng: np.random.Generator, text: str) -> dict[str, str]:
    words = text.split()
    k = int(rng.integers(len(words)))
    one = words.copy()
    one[k] = edit(rng, words[k], 1)
    two = words.copy()
    two[k] = edit(rng, words[k], 2) if len(words[k]) > 3 else edit(rng, words[k], 1)
    if len(words[k]) > 3 and _distance(two[k].casefold(), words[k].casefold()) != 2:
        raise AssertionError(two)
    other = str(rng.choice([w for w in WORDS if w.casefold() not in text.casefold()]))
    diff = words.copy()
    diff[k] = other.upper() if words[k].isupper() else other
    extra = EXTRA[rng.integers(len(EXTRA))]
    extra = extra.upper() if text.isupper() else extra
    right = text if rng.random() < 0.7 else (text.title() if not text.istitle() else text.upper())
    return {"right": right, "one_letter": " ".join(one), "two_letters": " ".join(two),
            "different_word": " ".join(diff), "extra_word": f"{text} {extra}"}


def phrase(rng: np.random.Generator) -> str:
    n = int(rng.choice([1, 1, 2, 2, 3]))
    return " ".join(str(rng.choice(WORDS)) for _ in range(n))


def text_cases(per_condition: int, seed: int = 0) -> list[TextCase]:
    rng = np.random.default_rng(seed)
    cases = []
    for condition in CONDITIONS:
        for _ in range(per_condition):
            text = phrase(rng)
            if condition == "multiline" and len(text.split()) < 2:
                text += " " + str(rng.choice(WORDS))
            template = CLAIM_TEMPLATES[rng.integers(len(CLAIM_TEMPLATES))]
            claims = {kind: template.format(t=t) for kind, t in _claim_texts(rng, text).items()}
            cases.append(TextCase(render(rng, condition, text), condition, text, claims))
    for _ in range(per_condition):  # claims on images without text
        size = [(1024, 768), (800, 600), (1280, 720)][rng.integers(3)]
        template = CLAIM_TEMPLATES[rng.integers(len(CLAIM_TEMPLATES))]
        cases.append(TextCase(photo_like(rng, size), "no_text", "", {"no_text": template.format(t=phrase(rng))}))
    return cases


# --- claim extraction: sentences that claim text, and sentences that only look like it -------

CLAIM_SENTENCES = {
    'A neon sign reads "Open 24 Hours" above the door.': ["Open 24 Hours"],
    "The chalkboard says SOUP OF THE DAY in white letters.": ["SOUP OF THE DAY"],
    "A book titled The Silent Forest lies on the table.": ["The Silent Forest"],
    "A jar labelled Sugar stands beside the kettle.": ["Sugar"],
    "Her shirt has the word love written across it.": ["love"],
    "A mug printed with 'World's Best Dad' sits on the desk.": ["World's Best Dad"],
    "The banner, which says Happy New Year, hangs across the hall.": ["Happy New Year"],
    "A street sign with the text: Main St.": ["Main St"],
    "A red stamp spelling out APPROVED covers the form.": ["APPROVED"],
    "A poster with the words Summer Festival 2024 in bold type.": ["Summer Festival 2024"],
    "The box is marked “Fragile” on every side.": ["Fragile"],
    "A plaque engraved with the word Founders hangs by the gate.": ["Founders"],
    "The cover shows the title 'Ocean Breeze' in gold.": ["Ocean Breeze"],
    "A road sign saying STOP stands at the corner.": ["STOP"],
    "A taxi with the logo of Uber on its door.": ["Uber"],
    "A cafe window reading Fresh Coffee and Pastries.": ["Fresh Coffee and Pastries"],
}
NON_CLAIMS = [
    "The word printed on the front is hard to read.",
    "The words on the sign are too small to make out.",
    "The text on the label is blurry and illegible.",
    "A girl reads a book under a tree.",
    "An old man reads the newspaper on a bench.",
    "A woman says something to her friend while they walk.",
    "Labeled jars of spices line the shelf.",
    "The sign reads clearly from across the street.",
    "The word is written in faded red paint.",
    "The words painted on the wall have mostly peeled away.",
    "A cozy room with a 'vintage' feel and warm light.",
    "The so-called \"golden hour\" light bathes the hills.",
    "Text is visible on the side of the truck but cannot be read.",
    "The logo on the cap is partly hidden by a fold.",
    "A book with an embossed title lies on the desk.",
    "A sign with some text hangs above the door.",
    "The word visible on the banner is partially obscured.",
    "A label on the bottle, too small to read.",
    "The poster's text is in a language that is hard to identify.",
    "A child points at the word on the blackboard.",
    "The shop's name is painted above the window in large letters.",
    "A laptop displays lines of code on its screen.",
    "The title of the book is not visible from this angle.",
    "The man reading a map looks confused.",
    "Handwritten notes cover the page, which reads like a diary.",
    "A 'for sale' feeling hangs over the empty lot.",
    "The text reads vertically along the spine of the book.",
    "The word itself is hard to make out in the dim light.",
    "Several labelled boxes are stacked in the corner.",
    "The sign, which says nothing legible, is rusted.",
]


# --- captions: clean dense ones and each kind of degeneration ---------------------------------

_SUBJECTS = ["a weathered fishing boat", "an elderly man in a grey wool coat", "a golden retriever",
             "a narrow cobblestone street", "a glass vase of sunflowers", "a young woman with curly hair",
             "a red vintage bicycle", "a stone bridge", "a wooden cabin", "a bowl of ramen", "a tabby cat",
             "a steam locomotive", "a lighthouse on a rocky point", "a crowded market stall", "a pair of hiking boots"]
_PLACES = ["on a misty harbour at dawn", "in a sunlit kitchen", "beside a calm alpine lake", "on a busy city corner",
           "in a quiet library", "under a cloudy autumn sky", "at the edge of a pine forest", "inside a small cafe",
           "on a sandy beach at sunset", "in a snowy village square"]
_SENTENCE_FRAMES = [
    "A {adj} photograph of {subj} {place}.",
    "In the foreground, {subj} rests on {surface}, its {part} catching the {light}.",
    "Behind it, {subj2} stands slightly out of focus, framed by {frame}.",
    "The {light} comes from the {side}, casting long shadows across {surface}.",
    "Small details stand out: {detail}, {detail2}, and {detail3}.",
    "The colour palette is dominated by {colour} and {colour2}, with touches of {colour3}.",
    "To the {side}, {subj2} leans against {surface}, partly hidden by {frame}.",
    "The background shows {background}, softened by a shallow depth of field.",
    "The composition follows the rule of thirds, with {subj2} placed near the {side} edge.",
    "Overall, the scene feels {mood} and {mood2}, as if captured during a pause in a {day} day.",
    "A {adj} texture covers {surface}, where {detail} and {detail2} are scattered.",
    "Near the top of the frame, {background} fades into a {colour} sky.",
    "The photographer seems to have stood close to {subj2}, which fills much of the {side} half.",
    "Reflections of {light} shimmer on {surface}, adding depth to the picture.",
]
_FILL = {
    "adj": ["crisp", "soft", "grainy", "high-contrast", "warm", "muted", "vivid", "quiet"],
    "surface": ["a worn wooden table", "wet paving stones", "a mossy stone wall", "the sandy ground",
                "a chipped enamel counter", "the polished floor", "a low brick ledge"],
    "part": ["edge", "handle", "rim", "surface", "frame", "outline"],
    "light": ["morning light", "afternoon sun", "lamp light", "pale winter light", "golden evening light"],
    "frame": ["a doorway", "two leafless trees", "hanging laundry", "a row of parked scooters", "tall reeds"],
    "side": ["left", "right"],
    "detail": ["a folded newspaper", "a ceramic cup", "a coil of rope", "a pair of reading glasses",
               "scattered pine needles", "a brass key", "a half-eaten apple"],
    "colour": ["deep blue", "ochre", "forest green", "slate grey", "rust red", "cream"],
    "background": ["a row of pastel houses", "rolling hills", "a line of pine trees", "a harbour crane",
                   "distant snowy peaks", "a brick warehouse"],
    "mood": ["calm", "nostalgic", "lively", "peaceful", "melancholic", "cheerful"],
    "day": ["busy", "slow", "quiet", "long"],
}


def _fill(rng: np.random.Generator, frame: str) -> str:
    values = {k: str(rng.choice(v)) for k, v in _FILL.items()}
    for k in ("detail", "colour", "mood"):
        picks = rng.choice(_FILL[k], size=3, replace=False)
        values.update({k: picks[0], f"{k}2": picks[1], f"{k}3": picks[2]})
    values["subj"], values["subj2"] = (str(s) for s in rng.choice(_SUBJECTS, size=2, replace=False))
    values["place"] = str(rng.choice(_PLACES))
    text = frame.format(**values)
    return text[0].upper() + text[1:]


def clean_caption(rng: np.random.Generator, min_words: int = 80, max_words: int = 250) -> str:
    """A dense caption of 80-250 words, each sentence from a different frame."""
    target = int(rng.integers(min_words, max_words + 1))
    frames = list(rng.permutation(_SENTENCE_FRAMES))
    out: list[str] = []
    while frames and (sum(len(s.split()) for s in out) < target):
        out.append(_fill(rng, frames.pop()))
    return " ".join(out)


NON_ENGLISH = {
    "pl": ["Na pierwszym planie stoi stara łódź rybacka pomalowana na niebiesko.",
           "W tle widać rząd kolorowych kamienic i kilka drzew bez liści.",
           "Światło poranka pada z lewej strony i rzuca długie cienie na bruk.",
           "Obok łodzi leży zwinięta lina i drewniana skrzynka z sieciami.",
           "Całość sprawia spokojne, nieco nostalgiczne wrażenie."],
    "de": ["Im Vordergrund steht ein altes Fischerboot, das blau gestrichen ist.",
           "Im Hintergrund sieht man eine Reihe bunter Häuser und einige kahle Bäume.",
           "Das Morgenlicht fällt von links ein und wirft lange Schatten auf das Pflaster.",
           "Neben dem Boot liegt ein aufgerolltes Seil und eine Holzkiste mit Netzen.",
           "Die Szene wirkt ruhig und ein wenig nostalgisch."],
    "fr": ["Au premier plan se trouve un vieux bateau de pêche peint en bleu.",
           "À l'arrière-plan, on aperçoit une rangée de maisons colorées et quelques arbres nus.",
           "La lumière du matin vient de la gauche et projette de longues ombres sur les pavés.",
           "À côté du bateau repose une corde enroulée et une caisse en bois pleine de filets.",
           "L'ensemble donne une impression calme et un peu nostalgique."],
    "es": ["En primer plano hay un viejo barco pesquero pintado de azul.",
           "Al fondo se ve una fila de casas de colores y algunos árboles sin hojas.",
           "La luz de la mañana entra por la izquierda y proyecta sombras largas sobre el empedrado.",
           "Junto al barco hay una cuerda enrollada y una caja de madera con redes.",
           "La escena transmite una sensación tranquila y algo nostálgica."],
    "it": ["In primo piano c'è una vecchia barca da pesca dipinta di blu.",
           "Sullo sfondo si vede una fila di case colorate e alcuni alberi spogli.",
           "La luce del mattino arriva da sinistra e proietta lunghe ombre sul selciato.",
           "Accanto alla barca ci sono una corda arrotolata e una cassa di legno piena di reti.",
           "L'insieme trasmette un'impressione calma e un po' nostalgica."],
    "pt": ["Em primeiro plano está um velho barco de pesca pintado de azul.",
           "Ao fundo vê-se uma fila de casas coloridas e algumas árvores sem folhas.",
           "A luz da manhã vem da esquerda e projeta sombras longas sobre a calçada.",
           "Ao lado do barco há uma corda enrolada e uma caixa de madeira com redes.",
           "A cena transmite uma sensação calma e um pouco nostálgica."],
    "nl": ["Op de voorgrond ligt een oude vissersboot die blauw geschilderd is.",
           "Op de achtergrond zie je een rij kleurrijke huizen en een paar kale bomen.",
           "Het ochtendlicht valt van links naar binnen en werpt lange schaduwen op de keien.",
           "Naast de boot ligt een opgerold touw en een houten kist met netten.",
           "Het geheel maakt een rustige en wat nostalgische indruk."],
    "zh": ["前景是一艘涂成蓝色的旧渔船。", "背景中可以看到一排彩色的房子和几棵光秃秃的树。",
           "清晨的光线从左边照进来，在石板路上投下长长的影子。", "船旁边放着一卷绳子和一个装满渔网的木箱。",
           "整个画面给人一种平静而略带怀旧的感觉。"],
    "ru": ["На переднем плане стоит старая рыбацкая лодка, выкрашенная в синий цвет.",
           "На заднем плане виден ряд разноцветных домов и несколько голых деревьев.",
           "Утренний свет падает слева и отбрасывает длинные тени на мостовую.",
           "Рядом с лодкой лежит свёрнутая верёвка и деревянный ящик с сетями.",
           "Вся сцена производит спокойное и немного ностальгическое впечатление."],
}
BOILERPLATE_OPENERS = [
    "The image shows ", "This image depicts ", "In this picture, we can see ", "Sure! Here is a detailed description of the image: ",
    "Here's a detailed caption for the photo: ", "The photograph captures ", "This is a photo of ", "In the given image, ",
    "The picture you provided shows ", "Certainly. ", "Image description: ", "We can see ", "Here we see ",
    "The scene presents ", "This photo is of ",
]
BOILERPLATE_CLOSERS = [" I hope this helps!", " Let me know if you need more details.", " Feel free to ask if you want more.",
                       " Is there anything else you would like to know?", " If you need any further details, just ask."]


@dataclass
class CaptionCase:
    text: str
    kind: str   # "clean" or a kind of degeneration


def _loop(rng, caption: str) -> str:
    words = caption.split()
    cut = int(rng.integers(len(words) // 3, 2 * len(words) // 3))
    n = int(rng.integers(2, 13))           # the looping phrase: 2-12 words
    phrase = words[cut - n:cut]
    out = words[:cut]
    for _ in range(int(rng.integers(2, 6))):
        rep = list(phrase)
        if n >= 5 and rng.random() < 0.5:  # a slight variation per repetition
            i = int(rng.integers(n))
            rep[i] = str(rng.choice(["small", "large", "old", "bright", "the", "a", "soft", "dark"]))
        out += rep
    return " ".join(out)


def _repeat_sentence(rng, caption: str) -> str:
    sents = [s for s in caption.split(". ") if s]
    i = int(rng.integers(len(sents) - 1))
    copy = sents[i].rstrip(".").split()
    if rng.random() < 0.6:  # a near-duplicate: one word changed, dropped or added
        j = int(rng.integers(1, len(copy)))
        op = rng.integers(3)
        if op == 0:
            copy[j] = str(rng.choice(["small", "old", "bright", "quiet", "soft"]))
        elif op == 1:
            del copy[j]
        else:
            copy.insert(j, str(rng.choice(["very", "rather", "quite"])))
    k = int(rng.integers(i + 1, len(sents) + 1))
    sents.insert(k, " ".join(copy))
    return ". ".join(s.rstrip(".") for s in sents) + "."


def _truncate(rng, caption: str) -> str:
    words = caption.split()
    style = rng.integers(4)
    if style == 0:    # mid-sentence, at a word boundary
        cut = int(rng.integers(len(words) // 2, len(words) - 1))
        while words[cut - 1][-1] in ".!?":
            cut -= 1
        return " ".join(words[:cut]).rstrip(",;:")
    if style == 1:    # mid-word
        cut = int(rng.integers(len(words) // 2, len(words) - 1))
        w = words[cut].strip(".,")
        return " ".join([*words[:cut], w[: max(1, len(w) // 2)]])
    if style == 2:    # after a title abbreviation
        head = caption.rsplit(". ", 1)[0] + "."
        return head + " " + str(rng.choice(["A brass plaque by the door names Dr.", "The letter is addressed to Mrs.",
                                            "A portrait of the founder, Prof.", "The house on the corner is No."]))
    head = caption.rsplit(". ", 1)[0] + "."   # after the next item number of a list
    return head + " Items on the shelf: 1. a teapot, 2. a stack of plates, 3."


def _mixed(rng, caption: str) -> str:
    sents = caption.split(". ")
    lang = str(rng.choice(list(NON_ENGLISH)))
    k = int(rng.integers(1, len(sents)))
    foreign = " ".join(str(s) for s in rng.choice(NON_ENGLISH[lang], size=int(rng.integers(1, 3)), replace=False))
    return ". ".join(sents[:k]) + ". " + foreign + " " + ". ".join(sents[k:])


def caption_cases(n: int, seed: int = 0) -> list[CaptionCase]:
    """`n` clean dense captions and `n` of each kind of degeneration."""
    rng = np.random.default_rng(seed + 1)
    cases = [CaptionCase(clean_caption(rng), "clean") for _ in range(n)]
    for _ in range(n):
        cases.append(CaptionCase(_loop(rng, clean_caption(rng)), "looping"))
        cases.append(CaptionCase(_repeat_sentence(rng, clean_caption(rng)), "repeated"))
        cases.append(CaptionCase(_truncate(rng, clean_caption(rng)), "truncated"))
        body = clean_caption(rng)
        if rng.random() < 0.75:
            opener = str(rng.choice(BOILERPLATE_OPENERS))
            body = opener + (body[0].lower() + body[1:] if opener[-2] not in ".:!" else body)
        else:
            body += str(rng.choice(BOILERPLATE_CLOSERS))
        cases.append(CaptionCase(body, "boilerplate"))
        lang = str(rng.choice(list(NON_ENGLISH)))
        cases.append(CaptionCase(" ".join(str(s) for s in rng.permutation(NON_ENGLISH[lang])), "non_english"))
        cases.append(CaptionCase(_mixed(rng, clean_caption(rng)), "mixed_language"))
    return cases
