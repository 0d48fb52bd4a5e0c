"""The maintainer's rewrite of output blocks keeps what a person wrote into them by hand."""

from __future__ import annotations

from tests.docs.write_outputs import keep_matching_lines


def test_a_block_that_still_matches_is_kept_as_written() -> None:
    old = '{"id": "{id}", {…}\n…\n'
    printed = '{"id": "s-1", "rows": 3}\nmore\nlines\n'

    assert keep_matching_lines(old, printed) == old


def test_a_changed_line_is_rewritten_and_the_hand_edited_lines_around_it_stay() -> None:
    old = '[{"id": "a:2", {…}\n{"on_hand": 24}\n'
    printed = '[{"id": "a:2", "data": {"x": 1}}]\n{"on_hand": 25, "at": "2026-12-03T04:00:00Z"}\n'

    assert keep_matching_lines(old, printed) == (
        '[{"id": "a:2", {…}\n{"on_hand": 25, "at": "{time}"}\n')


def test_lines_printed_beyond_the_old_block_get_placeholders() -> None:
    assert keep_matching_lines("one\n", "one\ntwo 2026-12-03T04:00:00Z\n") == (
        "one\ntwo {time}\n")
