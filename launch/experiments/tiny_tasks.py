"""The default model's three tasks (standard library only): the generator that trained
configs/models/switch-tiny and that writes prompts for it.

    reverse: cat dog sun      ->  sun dog cat        (3-6 distinct words, order reversed)
    sort: 5 2 9 1             ->  1 2 5 9            (3-7 distinct digits, ascending)
    next: 3 0 7               ->  4 1 8              (3-6 digits 0-8, each plus one)
"""

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
