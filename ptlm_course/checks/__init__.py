"""Instant-feedback checks for the exercise notebooks.

Each ``check_*`` function tests a student's implementation against the course's reference on varied
inputs. It prints a ✅ line when everything agrees and raises :class:`CheckFailed` with a plain-words
explanation otherwise.
"""
from ._core import CheckFailed

__all__ = ["CheckFailed"]
