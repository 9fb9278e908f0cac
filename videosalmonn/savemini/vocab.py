"""SAVE-mini's language: a vocabulary of common English words in categories, and a sentence grammar over it.

    sentence(rng)                    -> Sentence("tom carries the heavy basket near the station", key="basket")
    mention_shape(rng, "star")       -> a sentence naming the shape "star" and no other colour or shape word
    mention_colour(rng, "blue")      -> a sentence naming the colour "blue" and no other colour or shape word
    describe(rng, looks, background) -> a spoken description of a picture: "i can see a red circle and a blue star"
    WORDS                            every word any of them can say (test: at least 500)

Every sentence is lower case without punctuation and is exactly what espeak-ng is given, so it is the ASR label
(the WER scorer lower-cases and applies Whisper's normaliser to both sides, so "seven" and "7" agree). The
grammar draws clauses from many templates over ~600 words and may join two clauses, so there are far more
distinct sentences than any world will ever speak: a model must transcribe, not recognise a template.

The words are everyday words espeak-ng says clearly. Colours and shapes are their own categories (scene.COLOURS,
scene.SHAPES) and no other list repeats them, so a sentence names an on-screen thing only through those slots.
Homophones of other vocabulary words (read/red, pair/pear, sea/see, knight/night, ...) are left out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from videosalmonn.savemini.scene import COLOURS, SHAPES

# ------------------------------------------------------------------------------------------------- words


def words(text: str) -> tuple[str, ...]:
    """The whitespace-separated words of a block of text."""
    return tuple(text.split())


NOUNS = words(
    """
    apple banana basket bottle bucket candle carpet chair clock coat cookie cup desk dog cat door drum egg
    engine feather flag flower fork glove guitar hammer hat helmet jacket jar kettle key kite ladder lamp lemon
    letter lion map mirror monkey needle notebook onion oven pencil pillow plate pocket potato puppet rabbit
    radio robot rocket rope sandwich shirt shoe shovel spoon sock suitcase table teapot tiger towel tractor
    truck umbrella violin wagon wallet watch whistle window zebra blanket bicycle button camera carrot cherry
    compass crayon dragon elephant giraffe horse lantern magnet marble medal melon muffin napkin parrot peanut
    pepper piano pizza planet puzzle ribbon saddle shell spider sponge stamp sweater ticket tomato toaster
    turtle vase walnut wheel wizard anchor balloon barrel beetle biscuit blender bracelet broom brush cabbage
    calendar canoe chicken cushion dolphin donkey eagle envelope folder hammock insect jigsaw kitten koala
    leopard lobster lizard mango mitten motor necklace owl paddle panda peach pebble penguin pickle pigeon
    pumpkin puppy raccoon saucer scooter sofa squirrel stool strawberry sunflower tablet tent thimble toothbrush
    trumpet turkey vest whale wolf worm zipper box fox child mouse knife leaf goose sheep
    """
)
IRREGULAR_PLURALS = {
    "child": "children",
    "mouse": "mice",
    "knife": "knives",
    "leaf": "leaves",
    "wolf": "wolves",
    "goose": "geese",
    "sheep": "sheep",
    "potato": "potatoes",
    "tomato": "tomatoes",
    "mango": "mangoes",
}
ADJECTIVES = words(
    """
    big little tall happy sad angry quiet loud soft hard warm cold hot cool fresh old new young ancient heavy
    empty full clean dirty shiny dusty wooden plastic metal golden silver bright strange funny lucky lazy busy
    brave clever gentle kind proud shy calm noisy sleepy hungry thirsty tiny huge flat smooth rough sharp broken
    famous fancy simple tidy messy wet dry sticky fluffy furry crispy sweet sour bitter salty spicy tasty
    delicious friendly curious careful silly wild tame rich poor cheap expensive modern rusty useful lovely
    magic secret
    """
)
# base form, third person singular, past tense (written out: no spelling rules to get wrong)
_VERB_FORMS = """
    carry carries carried | catch catches caught | clean cleans cleaned | close closes closed | cook cooks cooked
    cover covers covered | drop drops dropped | fix fixes fixed | fold folds folded | follow follows followed
    grab grabs grabbed | hide hides hid | hold holds held | hug hugs hugged | kick kicks kicked | lift lifts lifted
    like likes liked | move moves moved | open opens opened | paint paints painted | pack packs packed
    pull pulls pulled | push pushes pushed | wash washes washed | throw throws threw | find finds found
    bring brings brought | buy buys bought | sell sells sold | borrow borrows borrowed | build builds built
    break breaks broke | draw draws drew | fill fills filled | lose loses lost | mend mends mended | need needs needed
    order orders ordered | polish polishes polished | repair repairs repaired | roll rolls rolled | shake shakes shook
    share shares shared | show shows showed | sort sorts sorted | squeeze squeezes squeezed | stir stirs stirred
    taste tastes tasted | touch touches touched | visit visits visited | want wants wanted | wrap wraps wrapped
    admire admires admired | bake bakes baked | count counts counted | chase chases chased | check checks checked
    choose chooses chose | deliver delivers delivered | drag drags dragged | examine examines examined
    fetch fetches fetched | juggle juggles juggled | measure measures measured | mix mixes mixed
    notice notices noticed | offer offers offered | plant plants planted | prepare prepares prepared
    protect protects protected | return returns returned | rescue rescues rescued | save saves saved
    scrub scrubs scrubbed | stack stacks stacked | tickle tickles tickled | unlock unlocks unlocked | wipe wipes wiped
    love loves loved | feed feeds fed | climb climbs climbed | sketch sketches sketched | keep keeps kept
    """.replace("|", " ").split()
VERBS = tuple(tuple(_VERB_FORMS[i : i + 3]) for i in range(0, len(_VERB_FORMS), 3))
NAMES = words(
    """
    alice anna ben carlos chloe daniel david emma ethan fiona frank george grace hannah harry isabel jack james
    julia kate kevin laura leo lily lucas lucy maria mark martin mary max mia nancy nina noah oliver olivia
    oscar paul peter rachel ruby sam sarah simon sophie steven thomas tom victor walter william zoe adam amy
    brian clara diana edward elena felix henry ivan jasmine linda monica nathan owen patrick robert sandra tina
    vincent wendy
    """
)
PLACES = words(
    """
    kitchen garden library station school museum market bakery hospital airport harbour beach forest park office
    garage bathroom bedroom basement attic classroom cinema theatre castle village city farm barn river lake
    mountain valley desert island bridge tunnel factory stadium church temple palace hotel restaurant shop
    supermarket playground zoo circus hallway closet porch balcony cottage jungle meadow pond studio warehouse
    workshop laboratory gallery
    """
)
NUMBERS = words(
    """
    two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen
    eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
    """
)
ADVERBS = words(
    """
    quickly slowly quietly loudly carefully gently happily sadly suddenly finally always never often rarely
    sometimes usually nearly almost badly easily softly proudly bravely calmly eagerly kindly politely secretly
    neatly
    """
)
DEGREES = ("very", "really", "quite", "rather", "extremely", "slightly", "fairly", "terribly")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = words(
    """
    january february march april may june july august september october november december
    """
)
TIMES = (
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "this morning",
    "this evening",
    "this afternoon",
    "last night",
    "last week",
    "next week",
    "next year",
    "every day",
    "once a month",
)
CONJUNCTIONS = ("and", "but", "while", "because", "so", "before", "after", "although", "when")

# What OCR scenes write: short words (no number words or articles: the TextVQA normaliser rewrites those) and
# 2-4 digit numbers, drawn by `ocr_text`.
OCR_WORDS = tuple(
    sorted(
        {w for w in NOUNS + ADJECTIVES + PLACES if 3 <= len(w) <= 6}
        | set(words("open stop exit push pull sale menu help info taxi hotel bank cafe park gate toys news"))
    )
)

COLOUR_WORDS = tuple(COLOURS)
SHAPE_WORDS = tuple(SHAPES)


# ------------------------------------------------------------------------------------------------- grammar


@dataclass(frozen=True)
class Sentence:
    """What is said (`text`, lower case, no punctuation) and its key word (`key`: the first noun, else the first
    name or shape; AVSR writes it on screen)."""

    text: str
    key: str


# One clause per template. Slots: {name} {name2} {verb} {verb_s} {verb_ed} {adj} {adj2} {noun} {noun2} {nouns}
# (plural) {number} {place} {time} {adv} {degree} {day} {month} {colour} {shape}; "{a_adj}" / "{a_noun}" put
# "a" or "an" before the word. The key is the first of KEY_SLOTS that the template uses.
CLAUSES = (
    "{name} {verb_s} the {adj} {noun} near the {place}",
    "please put {number} {nouns} in the {place}",
    "look at the {colour} {shape} next to the {adj} {noun}",
    "the {adj} {noun} was {verb_ed} by {name} {time}",
    "{name} and {name2} {verb} {number} {nouns} every {day}",
    "did you see the {adj} {noun} in the {place} {time}",
    "there are {number} {adj} {nouns} on the {noun2}",
    "{name} will {verb} the {noun} {time}",
    "my {noun} is {adj} but your {noun2} is {adj2}",
    "we went to the {place} with {number} {nouns} in {month}",
    "{name} {adv} {verb_ed} {number} {adj} {nouns} at the {place}",
    "can you {verb} the {adj} {noun} for {name} please",
    "i think the {noun} in the {place} is {degree} {adj}",
    "{name} said that the {noun} is {degree} {adj}",
    "{name} has {number} {colour} {nouns} and {a_adj} {noun2}",
    "the {shape} on the screen is {colour} {time}",
    "why did {name} leave the {noun} in the {place}",
    "every {day} {name} {verb_s} {a_adj} {noun} at the {place}",
    "the {noun} and the {noun2} are {degree} {adj} {time}",
    "{name} {adv} {verb_s} the {noun} in the {place}",
    "nobody {verb_ed} the {adj} {nouns} in {month}",
    "please do not {verb} the {noun} {time}",
    "how many {nouns} did {name} {verb} at the {place}",
    "{name} found {a_noun} under the {adj} {noun2}",
    "the {place} was {degree} {adj} {time}",
    "{name} wants to {verb} {number} {nouns} before {day}",
)
KEY_SLOTS = ("noun", "nouns", "noun2", "name", "shape", "place")


QUESTION_STARTS = ("please", "can you", "did you", "why did", "how many", "look at")
STATEMENTS = tuple(c for c in CLAUSES if not c.startswith(QUESTION_STARTS))  # the clauses a conjunction can join


def sentence(rng: random.Random) -> Sentence:
    """One sentence: a clause, or (one time in four) two statements joined by a conjunction."""
    if rng.random() < 0.75:
        return clause(rng)
    first, second = clause(rng, rng.choice(STATEMENTS)), clause(rng, rng.choice(STATEMENTS))
    return Sentence(f"{first.text} {rng.choice(CONJUNCTIONS)} {second.text}", first.key)


def clause(rng: random.Random, template: str | None = None) -> Sentence:
    template = template or rng.choice(CLAUSES)
    values = slot_values(rng)
    text = fill(template, values)
    key = next(values[s] for s in KEY_SLOTS if "{" + s + "}" in template or "{a_" + s + "}" in template)
    return Sentence(text, key)


def slot_values(rng: random.Random) -> dict[str, str]:
    """A value for every slot (each drawn whether used or not, so a template's words do not shift the draws)."""
    name, name2 = rng.sample(NAMES, 2)
    noun, noun2 = rng.sample(NOUNS, 2)
    adj, adj2 = rng.sample(ADJECTIVES, 2)
    base, third, past = rng.choice(VERBS)
    return {
        "name": name,
        "name2": name2,
        "verb": base,
        "verb_s": third,
        "verb_ed": past,
        "adj": adj,
        "adj2": adj2,
        "noun": noun,
        "noun2": noun2,
        "nouns": plural(noun),
        "number": rng.choice(NUMBERS),
        "place": rng.choice(PLACES),
        "time": rng.choice(TIMES),
        "adv": rng.choice(ADVERBS),
        "degree": rng.choice(DEGREES),
        "day": rng.choice(DAYS),
        "month": rng.choice(MONTHS),
        "colour": rng.choice(COLOUR_WORDS),
        "shape": rng.choice(SHAPE_WORDS),
    }


def fill(template: str, values: dict[str, str]) -> str:
    with_articles = {**values, "a_adj": with_article(values["adj"]), "a_noun": with_article(values["noun"])}
    return " ".join(template.format(**with_articles).split())


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def with_article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


# ----------------------------------------------------------------------------- sentences about the screen

# {shape} / {colour} is the only colour or shape word in each; the other slots are the grammar's
MENTION_SHAPE = (
    "look at the {shape} {name}",
    "{name} please look at the {shape}",
    "can you find the {shape} for me {name}",
    "the {shape} is the one {name} likes {time}",
    "{name} says the {shape} is {degree} {adj}",
    "keep your eyes on the {shape} {time}",
    "please point at the {shape} while {name} {verb_s} the {noun}",
    "my favourite shape here is the {shape}",
    "{name} wants you to watch the {shape} {adv}",
    "do you see the {shape} {name}",
    "remember the {shape} when you go to the {place}",
    "the {shape} reminds {name} of the {noun}",
)
MENTION_COLOUR = (
    "look at the {colour} one {name}",
    "{name} likes the {colour} shape best",
    "find the {colour} thing {time}",
    "please look at the shape that is {colour}",
    "{name} says the {colour} one is {degree} {adj}",
    "keep your eyes on the {colour} shape {time}",
    "the {colour} one reminds {name} of the {noun}",
    "can you see the {colour} shape {name}",
    "{name} painted the {colour} one {adv}",
    "my favourite is the {colour} one",
    "watch the {colour} shape while {name} {verb_s} the {noun}",
    "remember the {colour} shape when you visit the {place}",
)


def mention_shape(rng: random.Random, shape: str) -> Sentence:
    values = {**slot_values(rng), "shape": shape}
    return Sentence(fill(rng.choice(MENTION_SHAPE), values), shape)


def mention_colour(rng: random.Random, colour: str) -> Sentence:
    values = {**slot_values(rng), "colour": colour}
    return Sentence(fill(rng.choice(MENTION_COLOUR), values), colour)


# ------------------------------------------------------------------------------- spoken picture descriptions

DESCRIBE = (
    "i can see {things}",
    "there is {things} here",
    "this picture shows {things}",
    "in this picture there is {things}",
    "the picture has {things} on {a_background} background",
    "look there is {things} on {a_background} background",
    "{name} drew {things}",
    "here we have {things}",
    "{things} on {a_background} background",
    "{name} says this is {things}",
)


def describe(
    rng: random.Random, looks: list[tuple[str, str, str]], background: str, with_sizes: bool | None = None
) -> Sentence:
    """A spoken description naming every (size, colour, shape) of `looks` and no other colour or shape word."""
    if with_sizes is None:
        with_sizes = rng.random() < 0.4
    phrases = [
        with_article(f"{size} {colour} {shape}" if with_sizes else f"{colour} {shape}") for size, colour, shape in looks
    ]
    things = phrases[0] if len(phrases) == 1 else " ".join(phrases[:-1]) + " and " + phrases[-1]
    values = {**slot_values(rng), "things": things, "a_background": with_article(background)}
    template = rng.choice(DESCRIBE)
    text = " ".join(template.format(**values).split())
    return Sentence(text, looks[0][2])


def ocr_text(rng: random.Random) -> str:
    """A word of OCR_WORDS (60 %) or a 2-4 digit number."""
    if rng.random() < 0.6:
        return rng.choice(OCR_WORDS)
    digits = rng.choice((2, 3, 4))
    return str(rng.randrange(10 ** (digits - 1), 10**digits))


NUMBER_WORDS = ("zero", "one", *NUMBERS[:9])  # zero..ten, for counts said or written in words


def _words() -> frozenset[str]:
    lists = (NOUNS, ADJECTIVES, NAMES, PLACES, NUMBERS, ADVERBS, DEGREES, DAYS, MONTHS, COLOUR_WORDS, SHAPE_WORDS)
    words = {w for group in lists for w in group}
    words |= {plural(n) for n in NOUNS} | {f for v in VERBS for f in v} | {w for t in TIMES for w in t.split()}
    for template in CLAUSES + MENTION_SHAPE + MENTION_COLOUR + DESCRIBE:
        words |= {w for w in template.split() if not w.startswith("{")}
    return frozenset(words | set(CONJUNCTIONS) | {"a", "an"})


WORDS = _words()
