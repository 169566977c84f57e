"""Moving a change along its change model: through the Change Management API's next states where the instance has
it, through the Table API and changeloop's reading of the models otherwise (CHANGELOOP_CHANGE_API: auto | on | off).

The instance decides every move. With the API (`GET change/{sys_id}/nextstates`) it says which states the change may
be put in now and, when none leads on, which of the transition's conditions did not pass (`Not On hold`); that works
for any change type or state the instance has, a custom one too. Without it, the model in
servicenow/change_request.py says which moves lead to the target, and a type or state it does not know is refused at
once, naming the value (a retry cannot teach it a model).

One PATCH per move, carrying the fields that go with the last one (close_code and close_notes with Closed). A walk
of two moves (Implement -> Review -> Closed) asks for the next states once: the second PATCH goes straight to the
target, and only a refusal makes it ask again. Every walk starts from the state the instance reports now, so a retry
after a lost answer resumes where the first attempt stopped.

A change on hold moves nowhere but Canceled: the move is refused with a retryable `ChangeOnHold`, so it happens once
the hold is released (the workflows' ticket watch waits for that before it closes; this covers the race).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from temporalio.exceptions import ApplicationError

from servicenow.change_api import ChangeApi, NextStates, not_installed
from servicenow.change_request import ChangeState, ChangeType, transitions_between
from servicenow.client import ServiceNowClient
from servicenow.errors import BadRequest, Forbidden, NotFound
from workflows.change.models import INVALID_TICKET_STATE
from workflows.change.readiness import state_label

# Never retried: the instance has a change type or state changeloop's model does not know (Table API route).
UNKNOWN_CHANGE_MODEL = "UnknownChangeModel"
# Retried until released: a change on hold can only be canceled.
CHANGE_ON_HOLD = "ChangeOnHold"
_CANCELABLE = {ChangeState.NEW, ChangeState.ASSESS, ChangeState.AUTHORIZE, ChangeState.SCHEDULED, ChangeState.IMPLEMENT}
_MAX_MOVES = 6
REDETECT_SECONDS = 600.0  # auto: what the instance answered about the API is asked again after this long


def _label(state: str) -> str:
    return state_label(state)


class ChangeMoves:
    """One worker's way of moving changes. `mode` auto learns on the first move whether the instance has the API."""

    def __init__(self, sn: ServiceNowClient, mode: str = "auto") -> None:
        self.sn = sn
        self.api = ChangeApi(sn)
        self.mode = mode
        self._api_present: bool | None = {"on": True, "off": False}.get(mode)
        self._detected_at = 0.0

    @property
    def route(self) -> str:
        return "change_api" if self._api_present else "table_api"

    async def patch(self, sys_id: str, fields: Mapping[str, str]) -> None:
        """One write of the change's fields, through the route moves take (a state in `fields` is a move)."""
        if await self._with_api(sys_id):
            try:
                await self.api.update_change(sys_id, fields)
                return
            except (BadRequest, NotFound) as error:
                if not self._gone(error):
                    raise
        await self.sn.update("change_request", sys_id, dict(fields), fields=["state"])

    async def move(self, sys_id: str, change_type: str, target: ChangeState, fields: Mapping[str, str]) -> str:
        """Move the change to `target`, writing `fields` with the last move; answers the state it ends in."""
        nexts = await self._detect(sys_id)
        if self._api_present:
            try:
                return await self._move_by_api(sys_id, target, fields, nexts or await self.api.next_states(sys_id))
            except (BadRequest, NotFound) as error:
                if not self._gone(error):
                    raise
        return await self._move_by_table(sys_id, change_type, target, fields)

    def _gone(self, error: Exception) -> bool:
        """auto: the plugin was taken off since it was found (an instance being reconfigured): the Table API now."""
        if self.mode != "auto" or not not_installed(error):
            return False
        self._api_present = False
        return True

    async def _with_api(self, sys_id: str) -> bool:
        await self._detect(sys_id)
        return bool(self._api_present)

    async def _detect(self, sys_id: str) -> NextStates | None:
        """auto: the first call tells (an instance without the plugin answers 400 'Requested URI ...' or 404); its
        answer is the first move's next states, so finding out costs nothing."""
        if self.mode == "auto" and time.monotonic() - self._detected_at > REDETECT_SECONDS:
            self._api_present = None
        if self._api_present is not None:
            return None
        self._detected_at = time.monotonic()
        try:
            nexts = await self.api.next_states(sys_id)
        except (BadRequest, NotFound) as error:
            if not not_installed(error):
                raise
            self._api_present = False
            return None
        except Forbidden:  # installed, but not open to this user's roles: the Table API it is
            self._api_present = False
            return None
        self._api_present = True
        return nexts

    # -- the Change Management API ------------------------------------------------------------------------------------
    async def _move_by_api(self, sys_id: str, target: ChangeState, fields: Mapping[str, str], nexts: NextStates) -> str:
        for _ in range(_MAX_MOVES):
            current = _current(nexts)
            if current == target:
                if fields:
                    await self.api.update_change(sys_id, fields)
                return current
            step = _next_step(nexts, current, target)
            body = {"state": step.value} | (dict(fields) if step == target else {})
            await self.api.update_change(sys_id, body)
            if step == target:
                return step.value
            try:  # the usual case: one move left, straight to the target
                await self.api.update_change(sys_id, {"state": target.value} | dict(fields))
                return target.value
            except (BadRequest, Forbidden):
                nexts = await self.api.next_states(sys_id)  # ask the instance where it may go from here
        raise ApplicationError(
            f"the change did not reach {_label(target.value)} in {_MAX_MOVES} moves",
            type=INVALID_TICKET_STATE,
            non_retryable=True,
        )

    # -- the Table API ----------------------------------------------------------------------------------------------
    async def _move_by_table(
        self, sys_id: str, change_type: str, target: ChangeState, fields: Mapping[str, str]
    ) -> str:
        record = await self.sn.get("change_request", sys_id, fields=["state", "type", "on_hold"])
        current, kind = str(record.get("state", "")), str(record.get("type", "") or change_type or "standard")
        if kind not in ChangeType._value2member_map_:
            raise ApplicationError(
                f"change type {kind!r} is not one of changeloop's change models (standard, normal, emergency), and "
                f"this instance has no Change Management API to ask: move it by hand",
                type=UNKNOWN_CHANGE_MODEL,
                non_retryable=True,
            )
        if current not in ChangeState._value2member_map_:
            raise ApplicationError(
                f"change state {current!r} is not one of the {kind} change model's states, and this instance has no "
                f"Change Management API to ask: move it by hand",
                type=UNKNOWN_CHANGE_MODEL,
                non_retryable=True,
            )
        if current == target:
            if fields:
                await self.sn.update("change_request", sys_id, dict(fields), fields=["state"])
            return current
        if record.get("on_hold") == "true" and target != ChangeState.CANCELED:
            raise _on_hold(target)
        path: list[ChangeState]
        if target == ChangeState.CANCELED:
            path = [target] if ChangeState(current) in _CANCELABLE else []
        else:
            path = transitions_between(kind, current, target)
        if not path:
            raise ApplicationError(
                f"the change is {_label(current)} and cannot move to {_label(target.value)} along the {kind} change "
                f"model",
                type=INVALID_TICKET_STATE,
                non_retryable=True,
            )
        for state in path:
            body = {"state": state.value} | (dict(fields) if state == target else {})
            await self.sn.update("change_request", sys_id, body, fields=["state"])
        return target.value


def _current(nexts: NextStates) -> str:
    """The change's state now: where its transitions start (the list of available states includes it)."""
    for transition in nexts.transitions:
        if transition.from_state:
            return transition.from_state
    return nexts.available_states[0] if nexts.available_states else ""


def _next_step(nexts: NextStates, current: str, target: ChangeState) -> ChangeState:
    """The target when the instance offers it, else the furthest state the instance offers on the way to it."""
    if nexts.can_move_to(target.value):
        return target
    if target != ChangeState.CANCELED:
        ahead = [
            ChangeState(s)
            for s in nexts.available_states
            if s in ChangeState._value2member_map_
            and s != current
            and ChangeState(s) != ChangeState.CANCELED
            and nexts.can_move_to(s)
            and _rank(current) < _rank(s) < _rank(target.value)
        ]
        if ahead:
            return max(ahead, key=lambda s: _rank(s.value))
    blocking = nexts.blocking_conditions(target.value)
    if "Not On hold" in blocking or any("hold" in c.lower() for c in blocking):
        raise _on_hold(target)
    why = f" (conditions not met: {', '.join(blocking)})" if blocking else ""
    offered = ", ".join(_label(s) for s in nexts.available_states) or "none"
    raise ApplicationError(
        f"the change is {_label(current)} and the instance offers no move towards {_label(target.value)}{why}; "
        f"it may go to: {offered}",
        type=INVALID_TICKET_STATE,
        non_retryable=True,
    )


def _rank(state: str) -> float:
    try:
        return float(state)
    except ValueError:
        return float("nan")


def _on_hold(target: ChangeState) -> ApplicationError:
    return ApplicationError(
        f"the change is on hold: it can move to {_label(target.value)} once the hold is released",
        type=CHANGE_ON_HOLD,
    )
