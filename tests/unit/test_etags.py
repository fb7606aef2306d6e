"""ETags remembered per body object: the same answer as computing them, bounded memory."""

from app.catalog import etag
from app.etags import Etags


def test_the_tag_is_the_digest_of_the_body_whether_remembered_or_not():
    etags = Etags()
    body = b'{"id":"a"}' * 10
    assert etags.of(body) == etag(body)
    assert etags.of(body) == etag(body)  # remembered
    other = bytes(bytearray(body))  # equal bytes, another object
    assert etags.of(other) == etag(body)
    changed = body + b" "
    assert etags.of(changed) == etag(changed) != etag(body)


def test_bodies_are_bounded_by_bytes_oldest_first():
    etags = Etags(max_bytes=25)
    bodies = [bytes([65 + i]) * 10 for i in range(3)]
    for body in bodies:
        etags.of(body)
    assert len(etags) == 2 and etags.held == 20  # the first one went
    huge = b"x" * 26
    assert etags.of(huge) == etag(huge)  # answered, not kept
    assert len(etags) == 2 and etags.held == 20


def test_bodies_are_bounded_by_count():
    etags = Etags(max_entries=2)
    for i in range(3):
        etags.of(bytes([65 + i]) * 3)
    assert len(etags) == 2 and etags.held == 6
