"""Instruction records whose answers the code computes, in three sets by what a small model can learn of them.

- ``EASY_TASKS``, *spot a feature of the input*: capital letters or not, a number or not, a question or not.
  The answer is one of two words, and the bundled 2.6M-parameter model learns them in about 200 steps (1-2 minutes
  on a CPU): it only has to notice that some kind of token is present somewhere in the input.
- ``COPY_TASKS``, *copy from the input*: repeat the text or a word, pick the first or last word, write it in
  capitals, find a word. Easy for GPT-2, but the bundled model has no attention head that copies yet (its loss on a
  repeated random sequence does not drop the second time), so it must grow one first: several hundred steps.
- ``HARD_TASKS``, *compute the answer*: arithmetic, sorting, counting letters, spam or ham. Out of reach for a
  small model in a class period; they show what exact match measures when the model cannot do the task.

Students can check every answer:

    >>> generated_tasks(1, seed=0, tasks=["add"])
    [{'instruction': 'What is 97 plus 53?', 'input': '', 'output': '150'}]
    >>> generated_tasks(2, seed=0, tasks=EASY_TASKS)[1]
    {'instruction': 'Is there a number in the text? Answer yes or no.', 'input': 'island 28 dragon mountain', 'output': 'yes'}
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from gpt_core.spam_data import load_sms_spam  # the packaged SMS messages, labelled "spam" or "ham"

Task = Callable[[random.Random], dict]  # a random generator -> one {"instruction", "input", "output"} record


WORDS = [  # none of them is one token in the bundled model's BPE, so copying one is never a single lookup
    "apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "window", "garden", "rocket", "silver",
    "forest", "candle", "mirror", "ocean", "pencil", "yellow", "castle", "bridge", "dragon", "winter", "summer",
    "basket", "planet", "violin", "orange", "button", "spider", "rabbit", "jacket", "mountain", "island",
    "coffee", "marble", "thunder", "feather", "harbor", "meadow", "lantern", "compass",
]


def _record(instruction: str, input_text: str, output) -> dict:
    return {"instruction": instruction, "input": input_text, "output": str(output)}


def _some_words(rng: random.Random, low: int = 3, high: int = 5) -> list[str]:
    return rng.sample(WORDS, rng.randint(low, high))


# ----- spot a feature of the input (EASY_TASKS): capital letters, digits, a question mark --------------------------

PREDICATES = ["here", "red", "small", "asleep", "gone", "ready", "old", "new"]


def task_is_uppercase(rng: random.Random) -> dict:
    words = " ".join(_some_words(rng, 1, 3))
    upper = rng.random() < 0.5
    instruction = rng.choice(["Is the text in capital letters? Answer yes or no.",
                              "Is the text written in uppercase? Answer yes or no."])
    return _record(instruction, words.upper() if upper else words, "yes" if upper else "no")


def task_letter_case(rng: random.Random) -> dict:
    words = " ".join(_some_words(rng, 1, 3))
    upper = rng.random() < 0.5
    instruction = rng.choice(["Is the text in capital or small letters?", "Capital or small letters?"])
    return _record(instruction, words.upper() if upper else words, "capital" if upper else "small")


def task_has_number(rng: random.Random) -> dict:
    words = _some_words(rng, 2, 4)
    number = rng.random() < 0.5
    if number:
        words[rng.randrange(len(words))] = str(rng.randint(1, 99))
    instruction = rng.choice(["Does the text contain a number? Answer yes or no.",
                              "Is there a number in the text? Answer yes or no."])
    return _record(instruction, " ".join(words), "yes" if number else "no")


def task_number_or_word(rng: random.Random) -> dict:
    number = rng.random() < 0.5
    item = str(rng.randint(1, 999)) if number else rng.choice(WORDS)
    instruction = rng.choice(["Is this a number or a word?", "Number or word?"])
    return _record(instruction, item, "number" if number else "word")


def task_question_or_statement(rng: random.Random) -> dict:
    subject, predicate = rng.choice(WORDS), rng.choice(PREDICATES)
    question = rng.random() < 0.5
    text = f"Is the {subject} {predicate}?" if question else f"The {subject} is {predicate}."
    instruction = rng.choice(["Is this a question or a statement?", "Question or statement?"])
    return _record(instruction, text, "question" if question else "statement")


# ----- copy from the input (COPY_TASKS) ----------------------------------------------------------------------------


def task_copy(rng: random.Random) -> dict:
    words = " ".join(_some_words(rng, 2, 4))
    return _record(rng.choice(["Repeat the text.", "Copy the input."]), words, words)


def task_first_word(rng: random.Random) -> dict:
    words = _some_words(rng, 3, 4)
    return _record(rng.choice(["Write the first word.", "Which word comes first?"]), " ".join(words), words[0])


def task_last_word(rng: random.Random) -> dict:
    words = _some_words(rng, 3, 4)
    return _record(rng.choice(["Write the last word.", "Which word comes last?"]), " ".join(words), words[-1])


def task_repeat_word(rng: random.Random) -> dict:
    word, times = rng.choice(WORDS), rng.choice([2, 3])
    instruction = rng.choice(["Write the word {n}.", "Repeat the word {n}."]).format(
        n="twice" if times == 2 else "three times")
    return _record(instruction, word, " ".join([word] * times))


def task_uppercase(rng: random.Random) -> dict:
    words = " ".join(_some_words(rng, 1, 2))
    return _record(rng.choice(["Write the text in capital letters.", "Convert the text to uppercase."]), words,
                   words.upper())


def task_contains_word(rng: random.Random) -> dict:
    words = _some_words(rng, 3, 4)
    if rng.random() < 0.5:
        word, output = rng.choice(words), "yes"
    else:
        word, output = rng.choice([w for w in WORDS if w not in words]), "no"
    instruction = rng.choice(["Is '{w}' one of the words? Answer yes or no.",
                              "Does the list contain '{w}'? Answer yes or no."]).format(w=word)
    return _record(instruction, " ".join(words), output)


# ----- compute the answer (HARD_TASKS) ----------------------------------------------------------------------------


def task_add(rng: random.Random) -> dict:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    instruction = rng.choice(["What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}.",
                              "Find the sum of {a} and {b}."]).format(a=a, b=b)
    return _record(instruction, "", a + b)


def task_subtract(rng: random.Random) -> dict:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    instruction = rng.choice(["What is {a} minus {b}?", "Subtract {b} from {a}.", "Compute {a} - {b}."])
    return _record(instruction.format(a=a, b=b), "", a - b)


def task_multiply(rng: random.Random) -> dict:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    instruction = rng.choice(["What is {a} times {b}?", "Multiply {a} by {b}.", "Compute {a} * {b}."])
    return _record(instruction.format(a=a, b=b), "", a * b)


def task_reverse_words(rng: random.Random) -> dict:
    words = _some_words(rng)
    instruction = rng.choice(["Reverse the order of the words.", "Write these words in reverse order.",
                              "List the words from last to first."])
    return _record(instruction, " ".join(words), " ".join(reversed(words)))


def task_sort_words(rng: random.Random) -> dict:
    words = _some_words(rng)
    instruction = rng.choice(["Sort these words alphabetically.", "Put the words in alphabetical order.",
                              "Arrange the words from A to Z."])
    return _record(instruction, " ".join(words), " ".join(sorted(words)))


def task_change_case(rng: random.Random) -> dict:
    words = " ".join(_some_words(rng, 2, 4))
    case = rng.choice(["upper", "title"])
    if case == "upper":
        instruction = rng.choice(["Convert the text to uppercase.", "Write the text in capital letters."])
        return _record(instruction, words, words.upper())
    instruction = rng.choice(["Capitalize the first letter of each word.", "Convert the text to title case."])
    return _record(instruction, words, words.title())


def task_count_letter(rng: random.Random) -> dict:
    word = rng.choice(WORDS)
    letter = rng.choice(sorted(set(word)) if rng.random() < 0.8 else "aeiou")
    instruction = rng.choice(["How many times does the letter '{c}' appear in the word?",
                              "Count the letter '{c}' in the word."]).format(c=letter)
    return _record(instruction, word, word.count(letter))


def task_word_length(rng: random.Random) -> dict:
    word = rng.choice(WORDS)
    instruction = rng.choice(["How many letters are in the word '{w}'?", "Count the letters of '{w}'."])
    return _record(instruction.format(w=word), "", len(word))


def task_largest_number(rng: random.Random) -> dict:
    numbers = rng.sample(range(1, 100), rng.randint(3, 5))
    instruction = rng.choice(["Which number is the largest?", "Find the biggest number in the list.",
                              "Name the largest of these numbers."])
    return _record(instruction, ", ".join(map(str, numbers)), max(numbers))


def task_first_letters(rng: random.Random) -> dict:
    words = _some_words(rng)
    instruction = rng.choice(["Write the first letter of each word.", "Make an acronym from the words."])
    return _record(instruction, " ".join(words), "".join(w[0] for w in words).upper())


def task_spam_or_ham(rng: random.Random) -> dict:
    label = rng.choice(["spam", "ham"])  # half and half, although ham is 6.6x more common in the data
    text = rng.choice([text for row_label, text in load_sms_spam() if row_label == label])
    instruction = rng.choice(["Is this text message spam or ham? Answer with one word.",
                              "Label the SMS as 'spam' or 'ham'.", "Classify this message as spam or ham."])
    return _record(instruction, text, label)


TASKS: dict[str, Task] = {
    "is_uppercase": task_is_uppercase, "letter_case": task_letter_case, "has_number": task_has_number,
    "number_or_word": task_number_or_word, "question_or_statement": task_question_or_statement,
    "copy": task_copy, "first_word": task_first_word, "last_word": task_last_word,
    "repeat_word": task_repeat_word, "uppercase": task_uppercase, "contains_word": task_contains_word,
    "add": task_add, "subtract": task_subtract, "multiply": task_multiply,
    "reverse_words": task_reverse_words, "sort_words": task_sort_words, "change_case": task_change_case,
    "count_letter": task_count_letter, "word_length": task_word_length, "largest_number": task_largest_number,
    "first_letters": task_first_letters, "spam_or_ham": task_spam_or_ham,
}
EASY_TASKS = ("is_uppercase", "letter_case", "has_number", "number_or_word", "question_or_statement")
COPY_TASKS = ("copy", "first_word", "last_word", "repeat_word", "uppercase", "contains_word")
HARD_TASKS = ("add", "subtract", "multiply", "reverse_words", "sort_words", "change_case", "count_letter",
              "word_length", "largest_number", "first_letters", "spam_or_ham")
TASK_SETS = {"easy": EASY_TASKS, "copy": COPY_TASKS, "hard": HARD_TASKS}


def generated_tasks(n: int, seed: int = 123, tasks: Sequence[str] | None = None) -> list[dict]:
    """``n`` Alpaca-format records drawn from ``TASKS`` (all of them, or the names in ``tasks``).

    The same ``n`` and ``seed`` always give the same records; every answer is computed by the code.

    >>> generated_tasks(1, seed=0, tasks=["add"])
    [{'instruction': 'What is 97 plus 53?', 'input': '', 'output': '150'}]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"The number of generated records must be a whole number of at least 1, got {n!r}.")
    names = list(tasks) if tasks is not None else list(TASKS)
    unknown = [name for name in names if name not in TASKS]
    if unknown or not names:
        raise ValueError(f"Unknown task(s) {unknown}; choose from {', '.join(TASKS)}.")
    rng = random.Random(seed)
    return [TASKS[rng.choice(names)](rng) for _ in range(n)]
