"""Explicit state machines (DESIGN.md law 6): a move not in the table is a 409, never silent."""

from __future__ import annotations

from collections.abc import Mapping

from o2o.errors import InvalidTransition


class StateMachine:
    def __init__(
        self,
        name: str,
        transitions: Mapping[tuple[str, str], str],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.transitions = dict(transitions)
        self.labels = dict(labels or {})
        self.states = {s for s, _ in self.transitions} | set(self.transitions.values())

    def label(self, state: str) -> str:
        return self.labels.get(state, state)

    def can(self, current: str, action: str) -> bool:
        return (current, action) in self.transitions

    def next_state(self, current: str, action: str) -> str:
        try:
            return self.transitions[(current, action)]
        except KeyError:
            raise InvalidTransition(
                f"{self.name}当前状态为「{self.label(current)}」，不能执行 {action}",
                current_status=current,
                action=action,
            ) from None

    def sources_of(self, action: str) -> list[str]:
        """States from which ``action`` is allowed: for conditional ``UPDATE … WHERE status IN``."""
        return sorted(s for s, a in self.transitions if a == action)
