"""StopBuffer: release streamed text only once it cannot start a stop string."""

import random

import pytest

from mistral_serve.engine.stop import StopBuffer


def feed(stops, pieces):
    buf = StopBuffer(stops)
    released = [buf.push(p) for p in pieces]
    return buf, released


def test_docstring_example_stop_completes_across_pieces():
    buf, released = feed(["###"], ["Hi #", "#", "# there"])
    assert released == ["Hi ", "", ""]
    assert buf.stopped
    assert buf.flush() == ""
    assert buf.push("more") == ""


def test_docstring_example_held_text_is_released_when_it_stops_being_a_prefix():
    buf, released = feed(["###"], ["a #", "b"])
    assert released == ["a ", "#b"]
    assert not buf.stopped
    assert buf.flush() == ""


def test_flush_releases_a_held_partial_stop_at_the_end():
    buf, released = feed(["###"], ["x", "##"])
    assert released == ["x", ""]
    assert buf.flush() == "##"
    assert not buf.stopped


def test_stop_inside_one_piece_cuts_exactly_before_it():
    buf, released = feed(["STOP"], ["helloSTOPworld"])
    assert released == ["hello"] and buf.stopped


@pytest.mark.parametrize("pieces", [["aaab"], ["a", "a", "a", "b"], ["aa", "ab"], ["aaa", "b"], ["a", "aab"]])
def test_overlapping_stop_aab_in_aaab(pieces):
    buf, released = feed(["aab"], pieces)
    assert "".join(released) == "a"
    assert buf.stopped


def test_overlap_with_a_restart_inside_the_partial_match():
    # 'abcab' is held whole, then 'c' shows the real match starts at the second 'abc'.
    buf, released = feed(["abcabd"], ["abcab", "c", "abd"])
    assert released == ["", "abc", ""]
    assert buf.stopped


def test_earliest_of_several_stops_wins():
    buf, released = feed(["bc", "abcd"], ["xa", "b", "c", "d"])
    assert "".join(released) == "xa" and buf.stopped
    buf, released = feed(["abcd", "cd"], ["xabcd"])
    assert released == ["x"]


def test_holds_the_longest_partial_among_stops():
    buf = StopBuffer(["zz", "xyz"])
    assert buf.push("axy") == "a"  # 'xy' could still become 'xyz'
    assert buf.push("q") == "xyq"


def test_without_stops_everything_passes_through():
    buf, released = feed([], ["a", "#", ""])
    assert released == ["a", "#", ""]
    assert StopBuffer([""]).push("abc") == "abc"  # empty stop strings are ignored


def _longest_partial(text, stops):
    return max((n for s in stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)


def test_random_streams_match_a_plain_reference():
    rng = random.Random(1234)
    for _ in range(400):
        stops = ["".join(rng.choice("ab") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 14)))
        cuts = sorted(rng.sample(range(len(text) + 1), rng.randint(0, len(text))))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        found = [i for i in (text.find(s) for s in stops) if i >= 0]
        expected = text[:min(found)] if found else text
        buf = StopBuffer(stops)
        out, seen = "", ""
        for piece in pieces:
            seen += piece
            out += buf.push(piece)
            assert expected.startswith(out), (stops, pieces, out)
            if not buf.stopped:
                # Everything is released except the longest tail that may still start a stop.
                assert out == seen[:len(seen) - _longest_partial(seen, stops)], (stops, pieces)
        out += buf.flush()
        assert out == expected, (stops, pieces)
        assert buf.stopped == bool(found)
