"""refuse_older_candidate: a champion is never replaced by a version trained before it, unless asked."""

import pytest

from agent_pipeline.lib.core.errors import RegistryError
from agent_pipeline.lib.registry.ordering import ALLOW_OLDER_TAG, refuse_older_candidate


def test_newer_candidate_first_promotion_and_re_promotion_pass():
    refuse_older_candidate("7", "6")
    refuse_older_candidate("1", None)
    refuse_older_candidate("6", "6")
    refuse_older_candidate("10", "9")  # compared as numbers, not strings


def test_older_candidate_is_refused_with_one_line_saying_how_to_override():
    with pytest.raises(RegistryError) as err:
        refuse_older_candidate("9", "10")
    message = str(err.value)
    assert message.startswith("version 9 was trained before the current champion 10: not promoted")
    assert f"{ALLOW_OLDER_TAG}=true" in message and "\n" not in message


def test_older_candidate_passes_when_explicitly_allowed():
    refuse_older_candidate("5", "8", allow_older=True)


def test_versions_that_are_not_numbers_are_an_error():
    with pytest.raises(RegistryError, match="cannot order model versions"):
        refuse_older_candidate("v5", "8")
