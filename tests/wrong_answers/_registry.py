"""Where the corpus modules register their answers."""
WRONG = []    # (check name, key words the message must contain, answer)
CORRECT = []  # (check name, answer)


def wrong(check: str, *keywords: str):
    """Register a wrong answer to ``check``; its failure message must contain every key word (any case)."""
    def register(answer):
        WRONG.append((check, keywords, answer))
        return answer
    return register


def correct(check: str):
    """Register a correct answer to ``check`` in another style."""
    def register(answer):
        CORRECT.append((check, answer))
        return answer
    return register
