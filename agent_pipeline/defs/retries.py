"""Retries for the steps that talk to MLflow or the state folder.

A registry that answers 503 for a moment, a SQLite store locked by another run, a network
folder that blinks: errors that a second try a few seconds later does not see. Such steps
(training, evaluations, the baseline, the drift report) retry twice, after about 5 s and 10 s
(exponential backoff with jitter, so concurrent runs do not retry in lockstep). A failure that
a retry cannot fix (a missing champion, a missing reference, an unknown version) is raised as
``dg.Failure(..., allow_retries=False)`` and fails at once. ``champion_model`` has no retry
policy here: whether a promotion step may run again is the promotion transaction's decision.
"""

import dagster as dg

TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
