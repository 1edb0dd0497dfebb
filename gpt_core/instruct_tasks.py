"""Instruction records whose answers the code computes: arithmetic, word order, case, letters, spam or ham.

Students can check every answer, and a small model can learn them in minutes (chapter 7 on a CPU):

    >>> generated_tasks(1, seed=0, tasks=["add"])
    [{'instruction': 'What is 97 plus 53?', 'input': '', 'output': '150'}]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from gpt_core.spam_data import load_sms_spam  # the packaged SMS messages, labelled "spam" or "ham"

Task = Callable[[random.Random], dict]  # a random generator -> one {"instruction", "input", "output"} record


WORDS = [
    "apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "window", "garden", "rocket", "silver",
    "forest", "candle", "mirror", "ocean", "pencil", "yellow", "castle", "bridge", "dragon", "winter", "summer",
    "basket", "planet", "violin", "orange", "button", "spider", "rabbit", "jacket", "mountain", "island",
    "coffee", "marble", "thunder", "feather", "harbor", "meadow", "lantern", "compass",
]

Task = Callable[[random.Random], dict]


def _record(instruction: str, input_text: str, output) -> dict:
    return {"instruction": instruction, "input": input_text, "output": str(output)}


def _some_words(rng: random.Random, low: int = 3, high: int = 5) -> list[str]:
    return rng.sample(WORDS, rng.randint(low, high))


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
    "add": task_add, "subtract": task_subtract, "multiply": task_multiply,
    "reverse_words": task_reverse_words, "sort_words": task_sort_words, "change_case": task_change_case,
    "count_letter": task_count_letter, "word_length": task_word_length, "largest_number": task_largest_number,
    "first_letters": task_first_letters, "spam_or_ham": task_spam_or_ham,
}


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
