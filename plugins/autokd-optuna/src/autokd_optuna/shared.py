"""The shared-study claims of an optuna advisor: with ``storage``, several processes
ask one study, so before proposing an arch an advisor reads which archs others have
evaluated or are evaluating, claims its proposal with a time stamp, and takes a
recorded trial of the study as its own (on resume) only once."""

from __future__ import annotations

import time

from .study import CLAIM_ATTR, REPEAT_ATTR, SKIPPED_ATTR

__all__ = ["SharedStudyClaims"]


class SharedStudyClaims:
    """The part of :class:`~autokd_optuna.advisor.OptunaAdvisor` that reads and claims
    the trials of a study shared with other processes."""

    def _known_and_running(self, exclude: int | None = None) -> tuple[dict[str, tuple], dict[str, list]]:
        """Archs with a result (key -> (values, trial number)) and archs being evaluated
        by another process (key -> [(trial number, claim)]), leaving out trial ``exclude``."""
        known = dict(self._told)
        running: dict[str, list] = {}
        if not self._shared:
            return known, running
        from optuna.trial import TrialState

        mine = {t.number for trials in self._pending.values() for t in trials} | {exclude}
        for trial in self.study.get_trials(deepcopy=False):
            cached = self._study_cache.get(trial.number)
            if cached is None:
                arch = self._decode(trial.params)
                key = None if arch is None else self.space.key(arch)
                bookkeeping = REPEAT_ATTR in trial.user_attrs or SKIPPED_ATTR in trial.user_attrs
                values = tuple(trial.values) if trial.values is not None else None
                cached = (key, trial.state, values, bookkeeping)
                if trial.state.is_finished():  # finished trials never change again
                    self._study_cache[trial.number] = cached
            key, state, values, bookkeeping = cached
            if key is None or bookkeeping:
                continue
            if state == TrialState.COMPLETE:
                known.setdefault(key, (values, trial.number))
            elif state == TrialState.FAIL:
                known.setdefault(key, (None, trial.number))
            elif state == TrialState.RUNNING and trial.number not in mine:
                running.setdefault(key, []).append((trial.number, trial.user_attrs.get(CLAIM_ATTR)))
        return known, running

    def _lost_race(self, trial, key: str) -> bool:
        """Another process may propose the same arch at the same moment (same seed or
        same data: the same proposal; a GP trial shows no params while the GP is being
        fitted). Each proposal is claimed with a time stamp once its params are in the
        study, then the study is read again: of two running trials of one arch, the
        earlier claim (then the lower number) keeps it and the other one asks again.
        Both processes compare the same stored claims, so they agree on who keeps it."""
        claim = [time.time(), trial.number]
        trial.set_user_attr(CLAIM_ATTR, claim)
        known, running = self._known_and_running(exclude=trial.number)
        if key in known:
            self._answer_repeat(trial, *known[key])
            return True
        for number, theirs in running.get(key, ()):
            if theirs is not None and list(theirs) < claim:
                self._skip(trial, number)
                return True
        return False

    def _find_unclaimed(self, key: str, values: tuple[float, ...] | None) -> int | None:
        from optuna.trial import TrialState

        self._known_and_running()  # refresh the cache of finished trials
        for number, (k, state, v, bookkeeping) in sorted(self._study_cache.items()):
            if k != key or bookkeeping or number in self._claimed:
                continue
            if values is None and state == TrialState.FAIL:
                return number
            if values is not None and state == TrialState.COMPLETE and v == values:
                return number
        return None
