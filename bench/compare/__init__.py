"""Peregrine side by side with two peers, one worker each on one core.

``python -m bench.compare`` (``make bench``): see bench/README.md, section
"Peregrine vs peers". The peers live in bench/peers/, each in its own
virtualenv, created from its pinned requirements when missing.
"""
