"""The engine's guard on the trusted ``where`` condition: one balanced expression, lexed as PostgreSQL
lexes it (no server needed; tests/integration/test_pg_archive_refusals.py runs such conditions on one)."""

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.pg_archive import ArchiveError, check_where


@pytest.mark.parametrize('where', [
    "processing_status = 'promoted'",
    "note = 'a;b' AND \"odd;col\" IS NOT NULL",
    "name LIKE 'x%' OR kind = 'it''s'",
    "status = 'x' -- a comment; is harmless: it ends at the line end",
    "kind = 'e'",
    "type = 'e' AND code <> 'E'",
    "a = $$x; ) ($$",
    "a = $tag$ $$ ; $x$ $tag$",
    "a = e'x'",
    "a = E'\\\\''; DROP TABLE t; SELECT '",    # E'\\'' is a backslash and a quote: all of it one string
    "a = E'it\\'s; ) fine'",
    "a = 'one'\n  'continued ; )'",
    "(a = 1 OR b = 2) AND c[1] = 3",
    "a$b = 1 AND x = $1",
    "a = 1 /* outer /* inner ; ) */ still ( comment */",
    "a = U&'\\0041' AND b = U&\"c\"\"d\"",
    "1e'x' IS NULL",
])
def test_accepted(where):
    assert check_where(where) == where


@pytest.mark.parametrize('where', [
    'true; DROP TABLE t',
    "a = 'x'; DELETE FROM t",
    "a = E'\\''; DROP TABLE t; SELECT '",       # E'\'' ends at the third quote: the ";" is outside
    "a = 'unterminated",
    "a = E'unterminated\\'",
    "a = $$unterminated",
    "a = $x$ mismatched $y$",
    '"unterminated',
    "status='promoted') OR (true",
    ') OR (',
    '(a = 1',
    'a[1 = 1',
    'a[1) = 1',
    "a = 'one'\n  'continued' ) OR (true",
    "a = 1 /* outer /* inner */ ) OR ( */ ) OR (true",
    '',
    '   ',
    'a = 1\x00',
])
def test_refused(where):
    with pytest.raises(ArchiveError):
        check_where(where)


def test_none_is_no_condition():
    assert check_where(None) is None


@pytest.mark.parametrize('where', [
    "a = 1 -- it's; fine\n AND b = 2",
    "a = 1 /* ; ' */ AND b = 2",
])
def test_comments_are_skipped_like_the_server_does(where):
    assert check_where(where) == where


@pytest.mark.parametrize('where', [
    "a = 1 -- '\n); DROP TABLE t; SELECT ((1 --'",
    "a = 1 /* unterminated",
    "a = 1 /* nested /* */ unterminated",
    "a = 1 -- comment ends at a carriage return\r; DROP TABLE t",
])
def test_quotes_hidden_in_comments_do_not_hide_a_separator(where):
    with pytest.raises(ArchiveError):
        check_where(where)
