"""Caption post-processing on crafted degenerate captions."""

from captioners.postprocess import clean, collapse_loops, cut_to_budget, strip_artefacts


def words(s: str) -> int:
    """A transparent token counter for the tests."""
    return len(s.split())


def test_chat_artefacts_are_stripped():
    assert strip_artefacts("<|im_start|>assistant: A cat on a mat.<|im_end|></s>") == "A cat on a mat."
    assert strip_artefacts("ASSISTANT: The image shows a dog.") == "The image shows a dog."


def test_loops_collapse_to_one_copy():
    assert collapse_loops("a red red red red ball") == "a red ball"
    assert collapse_loops("the sky is blue the sky is blue the sky is blue.") == "the sky is blue."
    assert collapse_loops("a red red ball") == "a red red ball"  # two copies is language, not a loop


def test_repeated_sentences_are_dropped_and_reported():
    c = clean("A dog runs. The sky is clear. A dog runs. a dog runs!", words, 300)
    assert c.text == "A dog runs. The sky is clear."
    assert "repeated_sentences" in c.changes


def test_budget_cut_at_sentence_boundary_and_recorded():
    text = "One two three. Four five six. Seven eight nine ten."
    kept, cut = cut_to_budget(text, words, 7)
    assert kept == "One two three. Four five six." and cut == "Seven eight nine ten."
    c = clean(text, words, 7)
    assert c.tokens == 6 and c.cut == cut and "budget_cut" in c.changes


def test_one_overlong_sentence_is_cut_by_words():
    kept, cut = cut_to_budget("w " * 50, words, 10)
    assert words(kept) == 10 and words(cut) == 40


def test_empty_and_none_are_empty():
    assert clean(None, words, 10).text == "" and clean("  </s> ", words, 10).tokens == 0
