"""The default model's three tasks (standard library only): the generator that trained
configs/models/switch-tiny and that writes prompts for it.

    reverse: cat dog sun      ->  sun dog cat        (3-6 distinct words, order reversed)
    sort: 5 2 9 1             ->  1 2 5 9            (3-7 distinct digits, ascending)
    next: 3 0 7               ->  4 1 8              (3-6 digits 0-8, each plus one)
"""
import random

TASKS = ("reverse", "sort", "next")
WORDS = ("cat", "dog", "sun", "moon", "tree", "fish", "bird", "car", "red", "blue",
         "green", "milk", "rain", "snow", "star", "book", "door", "hat", "cup", "box",
         "apple", "river", "stone", "cake")


def make_example(rng, task):
    """Return (prompt, answer) for one random example of `task`, drawn from `rng` (random.Random)."""
    if task == "reverse":
        words = rng.sample(WORDS, rng.randint(3, 6))
        return "reverse: " + " ".join(words), " ".join(reversed(words))
    if task == "sort":
        digits = rng.sample(range(10), rng.randint(3, 7))
        return "sort: " + " ".join(map(str, digits)), " ".join(map(str, sorted(digits)))
    if task == "next":
        digits = [rng.randint(0, 8) for _ in range(rng.randint(3, 6))]
        return "next: " + " ".join(map(str, digits)), " ".join(str(d + 1) for d in digits)
    raise ValueError(task)


def heldout_examples(seed=1234, per_task=200):
    """The held-out set train_tiny_model.py excludes from training: (task, prompt, answer) for
    per_task distinct prompts of each task, drawn from random.Random(seed + 1) task by task."""
    rng, seen, examples = random.Random(seed + 1), set(), []
    for task in TASKS:
        n = 0
        while n < per_task:
            prompt, answer = make_example(rng, task)
            if prompt in seen:
                continue
            seen.add(prompt)
            examples.append((task, prompt, answer))
            n += 1
    return examples
