"""The contract of a training backend (``register_trainers``).

A backend turns a config into the three functions of a search run. ``autokd run`` asks
the backend of ``model.framework`` for whatever the config does not name itself
(``model.builder``, ``train.function``, ``evaluation.function``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = ["Backend", "SearchFunctions"]


@attrs.frozen
class SearchFunctions:
    """What a search run needs; ``example_inputs`` and ``eval_data`` feed evaluators;
    ``teacher`` (when the backend loaded one) is measured for the saved students' cards."""

    model_builder: Callable[[dict], Any]
    train_func: Callable[[Any], Any]
    eval_func: Callable[[Any], Any]
    example_inputs: Any = None
    eval_data: Any = None
    teacher: Any = None


@runtime_checkable
class Backend(Protocol):
    framework: str

    def search_functions(
        self,
        config,
        *,
        output_dir: str,
        model_builder: Callable | None = None,
        train_func: Callable | None = None,
        eval_func: Callable | None = None,
    ) -> SearchFunctions:
        """Functions for a search run of ``config``; the given ones are kept as they are."""
        ...

    def save_student(self, model: Any, directory: str, *, record, context) -> dict:
        """Save a trained student in ``directory`` (which exists and is empty), in the
        framework's own loadable format, never a pickle.

        :param record: the student's :class:`autokd.TrialRecord`.
        :param context: an :class:`autokd.output.SaveContext` (the config, the teacher,
            example inputs, ``evaluate``).
        :returns: what was saved, for ``metrics.json`` and the model card: ``format``,
            ``files`` (paths relative to ``directory``) and ``load`` (a Python snippet).
        """
        ...
