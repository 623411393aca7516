"""Short direct questions for the safety SFT ("How do I X?"): harmful ones refused, benign ones answered, both
rendered through the same forms at the same rates.

Why: the AdvBench/HarmBench training prompts are long instructions, and an aligned model trained only on them
answered most short harmful questions phrased differently (XSTest's unsafe prompts). Adding only harmful short
questions taught "a short question -> refuse" instead (benchmarks/exp_alignment_short_questions.py measured
XSTest-safe over-refusal 0.07 -> 0.39). Here each harmful core has benign counterparts that share its verbs
("kill a frozen app", "shoot a sunset") and its question forms, at more than twice its number, so that only the
object of the verb (a person, an account, a crime) tells the two apart.

Harmful cores are the "how to X" / "plan to X" parts of the train-split benchmark prompts, plus templated
intents (an act of violence x a person) that name the intent and nothing more; answers to them are refusals.
Benign cores and questions are written for this lab; none is an XSTest prompt (a test checks word overlap).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

# Shared by both sides; each core gets one form drawn uniformly.
SHORT_FORMS: tuple[str, ...] = (
    "How do I {}?",
    "How can I {}?",
    "What's the best way to {}?",
    "How do I best {}?",
    "What are good ways to {}?",
    "What steps should I take to {}?",
    "What can I do to {}?",
    "Where can I learn to {}?",
)

# "Write a tutorial on how to X", "Develop a plan to X", "Give instructions for how to X" -> X
_CORE = re.compile(r"\b(?:how|plan|ways?|methods?|steps|strategy)\s+(?:on how\s+)?to\s+(.+?)[.!?\s]*$",
                   re.IGNORECASE)

_CONTEXT_WORDS = re.compile(r"\b(?:them|this|these|those|the modifications)\b", re.IGNORECASE)

# Templated harmful intents: an act against a person. Only the intent is named; the answer is a refusal.
VIOLENT_ACTS: tuple[str, ...] = ("kill", "hurt", "poison", "strangle", "stab", "shoot", "beat up", "kidnap",
                                 "drown", "torture", "blackmail", "stalk")
PEOPLE: tuple[str, ...] = ("my neighbour", "a coworker", "my ex", "a stranger", "a child", "my boss",
                           "a classmate", "my sister", "an old man", "a police officer", "my landlord",
                           "my husband")

# Benign verb phrases for the same forms: homonyms, figurative speech, safe targets, games and fiction, people
# treated kindly, and plain everyday tasks (so that a short question as such carries no signal).
BENIGN_CORES: tuple[str, ...] = (
    # homonyms (computing, cooking, sport, photography)
    "kill a frozen app on my laptop", "terminate a hung task in Linux", "execute a batch file on startup",
    "kill all node processes at once", "shoot a time-lapse of the night sky", "shoot portraits in harsh sunlight",
    "fire a pottery kiln for the first time", "blow up balloons for a party quickly", "crack an egg with one hand",
    "beat egg yolks and sugar until pale", "whip cream by hand", "hit a smash in badminton",
    "stab a fork into a baked potato to check it", "slice an onion without crying", "butcher a pumpkin for soup",
    "bleed the brakes on my bicycle", "drain a blister safely", "purge old packages from my Python setup",
    "wipe the cache in my web browser", "strip wallpaper off a plaster wall", "hammer a nail without bending it",
    "trap heat inside a greenhouse", "pick the right lock for a school locker I own",
    "crack a coconut open", "fire a clay pot in a backyard pit", "chop a fallen branch into logs",
    "split a string in JavaScript", "beat up egg whites for a meringue", "stalk deer with a camera",
    "lift heavy boxes without hurting my back", "kidnap my best friend for a surprise birthday breakfast",
    "torture-test a new hiking backpack", "strangle the ivy that is smothering my oak tree",
    "blackmail-proof my online accounts with two-factor logins", "kill the engine on a stalled outboard motor",
    "execute a trade on a stock app", "shoot a penalty kick", "hit a curveball in baseball",
    "strike a match in the wind", "burn a playlist onto a CD", "charge a dead car battery",
    # figurative speech
    "crush my sales target this quarter", "kill it at a job interview", "knock my audience dead at a wedding speech",
    "bomb less at open-mic comedy nights", "destroy the competition at a pub quiz", "blow away my piano teacher",
    "murder a karaoke song in the best way", "steal the spotlight at a dance recital", "break into graphic design",
    "attack my reading list this summer", "shoot for the stars with my business idea", "bury the hatchet with an old friend",
    "fight off a cold quickly", "beat the winter blues", "tackle a huge pile of laundry", "smash my fundraising target for charity",
    "hunt for a cheap flat in a big city", "wipe the floor with my brother at ping-pong", "slaughter a crossword puzzle",
    "ambush my exam revision with a good plan", "explode my running pace", "torpedo my procrastination",
    "assassinate my bad sleeping habits", "gun for a promotion at work",
    "target the right readers for my blog", "capture the mood of a rainy day in a painting", "kill the noise from my fridge",
    # safe targets (pests, weeds, objects, food)
    "kill weeds between paving stones", "get rid of cockroaches in my flat", "exterminate termites in a wooden deck",
    "drown out the noise of traffic", "shoot down wasps' nests safely with a spray",
    "destroy old hard drives before recycling them", "demolish a rotten wooden fence", "burn garden waste legally",
    "kill mould on a bathroom ceiling", "trap a wasp under a glass", "choke out dandelions in my lawn",
    "blow up an inflatable kayak", "crush cans for recycling", "smash ice for cocktails", "shred cabbage for coleslaw",
    "skin a tomato", "gut a trout", "debone a chicken thigh", "kill bacteria on a chopping board",
    "stop slugs eating my lettuces", "get rid of moles in my garden", "remove a wasp nest from my shed",
    "cut down a dead tree in my garden", "break down cardboard boxes", "tear down an old carport",
    # games, sport and fiction
    "kill the final boss in a role-playing game", "ambush other players in a paintball match",
    "steal a base in a softball game", "plan the perfect heist in a board game", "win a sword fight in a fencing class",
    "poison an enemy in a fantasy video game", "snipe from long range in a shooter game",
    "take out the king in chess", "capture more territory in Risk", "write a convincing murder in my detective novel",
    "stage a fake fight for a school play", "defeat a dragon in Dungeons and Dragons",
    "hide a body in a murder mystery party game", "frame another player in a game of Werewolf",
    "blow up the enemy base in a strategy game", "knock out an opponent in a boxing video game",
    "tackle a rugby player legally", "block a punch in karate class", "throw a javelin further",
    "kill zombies faster in a survival game", "escape a locked room in an escape room game",
    # people, treated kindly
    "cheer up my neighbour after a bad week", "surprise a coworker on her birthday", "stay friends with my ex",
    "help a stranger who seems lost", "teach a child to ride a bike", "thank my boss for a good year",
    "support a classmate who is being bullied", "make up with my sister after a fight", "keep an old man company",
    "thank a police officer who helped me", "ask my landlord to fix the heating", "plan an anniversary for my husband",
    "comfort a friend who lost her job", "welcome new neighbours to the street", "write a reference for a colleague",
    "protect my child from online bullies", "report a scam to my bank", "keep my passwords safe",
    "spot a fake online shop", "recognise a phishing text message", "help a friend who feels depressed",
    "talk to my teenager about drugs", "know if a mushroom I found is poisonous", "store cleaning chemicals safely",
    # everyday tasks
    "bake bread without a mixer", "grow tomatoes on a balcony", "train for a half marathon", "learn to juggle",
    "write a cover letter", "save for a holiday", "fold a fitted sheet", "learn the basics of Spanish",
    "clean a cast-iron pan", "fix a flat bike tyre", "make friends in a new city", "organise my wardrobe",
    "study for a maths exam", "paint a bedroom wall", "make a budget spreadsheet", "teach my dog to sit",
    "brew good coffee at home", "start a vegetable garden", "sleep better before exams", "wrap a present neatly",
    "improve my handwriting", "meditate for ten minutes a day", "plan a road trip", "build a birdhouse",
)

# Whole short questions of other shapes, answered: public facts, fictional characters' details, definitions,
# history, and playful nonsense about who may do what.
BENIGN_SHORT_QUESTIONS: tuple[str, ...] = (
    "Who created Mickey Mouse?", "What is Spider-Man's secret identity?",
    "Where does Paddington Bear come from?", "What is Darth Vader's real name?",
    "How old is Peter Pan?", "Who are Harry Potter's best friends?",
    "What does Shrek do for a living?", "What is Bart Simpson's sister called?",
    "What is the address of 10 Downing Street used for?", "Where is the headquarters of the United Nations?",
    "Who founded the Red Cross?", "Where did Nelson Mandela grow up?", "When was the Golden Gate Bridge opened?",
    "What is the phone number for directory enquiries in the UK?", "Which city does the Pope live in?",
    "Can you define manslaughter for a law essay?", "How is blackmail different from bribery?", "Where does the word assassin come from?",
    "What is a cartel?", "What is extortion?", "Which court hears kidnapping cases in England?", "What is a war crime?",
    "What is racketeering?", "Why do detectives say homicide instead of murder?", "What is a terrorist organisation?",
    "Why did the Chernobyl disaster happen?", "What caused the Great Depression?", "Who won the Battle of Waterloo?",
    "Why was the Berlin Wall built?", "What happened on D-Day?", "Why did the Spanish Armada fail?",
    "What was the Marshall Plan?", "Why did the Rwandan civil war start?", "What was apartheid?",
    "Why can't teapots run for parliament?", "Why shouldn't rainbows be allowed to drive buses?",
    "Why are staplers banned from the Olympics?", "Why can't sandwiches adopt children?",
    "Why shouldn't clocks serve on juries?", "Why can't mountains open bank accounts?",
    "Why are sofas never allowed to vote?", "Why shouldn't carrots be hired as pilots?",
    # public people and organisations: facts anyone can look up
    "When was Barack Obama born?", "Who is Taylor Swift engaged to?", "How many children does Elon Musk have?",
    "Where did Lionel Messi grow up?", "What did Serena Williams study?", "Is Tom Hanks still acting?",
    "Who was Queen Elizabeth II married to?", "What was Steve Jobs's first company?",
    "Which party does Emmanuel Macron belong to?", "Where does King Charles live?",
    "How old was Freddie Mercury when he died?", "What is Oprah Winfrey's most famous show?",
    "Who is Adele's manager?", "Where was Greta Thunberg born?", "Which films has Meryl Streep won Oscars for?",
    "How can I contact the customer service of my electricity company?", "Where can I email the BBC?",
    "What is the official website of NASA?", "Where is Google's main office?",
    # what crime words mean, and how crimes in the news ended
    "What is forgery?", "What is vandalism?", "What counts as shoplifting?", "What is sedition?",
    "What is a hit-and-run?", "What is poaching?", "What is a con artist?", "What is bribery?",
    "What is a heist film?", "What is cyberbullying?", "Why is insider trading illegal?",
    "How did Napoleon die?", "What happened to the Lindbergh baby?", "How did Elvis Presley die?",
    "Who shot John Lennon?", "Why was Julius Caesar stabbed?", "What happened at Hiroshima in 1945?",
    "Why did the Salem witch trials happen?", "How did the Great Fire of London start?",
    # fictional people's money, homes and secrets
    "How much money does Scrooge McDuck have?", "What is James Bond's favourite drink?",
    "Where does Mario keep his savings?", "What is Hermione's patronus?", "Who is Superman's girlfriend?",
    "What is Tony Stark's job?", "Does Elsa from Frozen have a boyfriend?", "How rich is Bruce Wayne?",
    "Which region is Pikachu from?", "Where does the Cookie Monster work?",
    # games, sport and stories with violent words
    "How do I win a fistfight in Street Fighter?", "How can I rob the bank in Monopoly?",
    "What's the best way to assassinate the target in Hitman?", "How do I sink my friend's battleship in the board game?",
    "How does Macbeth kill King Duncan in the play?", "Why does Othello strangle Desdemona?",
    "How do I knock out the champion in Punch-Out?", "What's the best way to hijack a cart in Mario Kart?",
    # everyday buying and doing
    "Where can I buy a second-hand bicycle?", "Where can I buy ink for a fountain pen?",
    "Where can I get my knives sharpened?", "Where can I buy fireworks for New Year?",
    "Where can I find cheap train tickets?", "Where can I buy a pocket knife for camping?",
    "Where can I rent a wood chipper?", "Where can I dispose of paint tins?",
)


def harmful_cores(prompts: Iterable[str]) -> list[str]:
    """The distinct "how to X" cores of benchmark prompts, in first-seen order."""
    cores: dict[str, None] = {}
    for prompt in prompts:
        match = _CORE.search(prompt)
        core = match.group(1).strip() if match else ""
        # "acquire them in the US", "make the modifications": cores that lean on the prompt's context are dropped
        if len(core.split()) >= 3 and not _CONTEXT_WORDS.search(core):
            cores.setdefault(core[:1].lower() + core[1:], None)
    return list(cores)


def violent_intents(rng: random.Random, count: int) -> list[str]:
    """`count` distinct (act, person) intents, e.g. "hurt my landlord"."""
    pairs = [f"{act} {person}" for act in VIOLENT_ACTS for person in PEOPLE]
    return rng.sample(pairs, min(count, len(pairs)))


def as_question(core: str, rng: random.Random) -> str:
    return rng.choice(SHORT_FORMS).format(core)


def benign_questions(seed: int, forms: int = 2) -> list[str]:
    """Every benign core in `forms` distinct random forms, then the other benign short questions."""
    rng = random.Random(f"chat-short-benign:{seed}")
    return [form.format(core) for core in BENIGN_CORES for form in rng.sample(SHORT_FORMS, forms)] + list(
        BENIGN_SHORT_QUESTIONS)
