"""``api.RetryPolicyService``: Armada's retry policies, records on the queues topic.

A policy is refused whole when a rule is malformed (no action, no ``on_category``, a
subcategory without a category); a policy still named by a queue cannot be deleted. Armada's
``mutate`` blocks are refused: Flotilla does not apply them, and a stored rule that silently
does less than it says would mislead.
"""

from __future__ import annotations

import grpc
from armada_client.armada import submit_pb2, submit_pb2_grpc
from google.protobuf import empty_pb2

from flotilla.api.aborts import abort
from flotilla.api.job_view import JobView
from flotilla.api.validation import ValidationError
from flotilla.jobs.retry import FAIL, RETRY
from flotilla.log.schema import RetryPolicy, RetryRule, now
from flotilla.log.writer import LogWriter

_ACTIONS = {submit_pb2.RETRY_ACTION_RETRY: RETRY, submit_pb2.RETRY_ACTION_FAIL: FAIL}
_ACTION_ENUMS = {name: value for value, name in _ACTIONS.items()}


def retry_policy(message: submit_pb2.RetryPolicy) -> RetryPolicy:
    """The log's form of a policy, or ValidationError naming the first bad field."""
    if not message.name:
        raise ValidationError("name", message.name, "a retry policy needs a name")
    if message.default_action == submit_pb2.RETRY_ACTION_UNSPECIFIED:
        default_action = FAIL  # Armada's safety net when the field is left out
    elif message.default_action in _ACTIONS:
        default_action = _ACTIONS[message.default_action]
    else:
        raise ValidationError("default_action", message.default_action, "must be Retry or Fail")
    rules = []
    for index, rule in enumerate(message.rules):
        path = f"rules[{index}]"
        if rule.action not in _ACTIONS:
            raise ValidationError(f"{path}.action", rule.action, "must be Retry or Fail")
        if not rule.on_category:
            what = (
                "onSubcategory is only valid with onCategory"
                if rule.on_subcategory
                else "a rule needs onCategory"
            )
            raise ValidationError(f"{path}.on_category", rule.on_category, what)
        if rule.HasField("mutate"):
            raise ValidationError(f"{path}.mutate", "set", "Flotilla does not apply retry mutations")
        rules.append(RetryRule(_ACTIONS[rule.action], rule.on_category, rule.on_subcategory))
    return RetryPolicy(
        name=message.name,
        retry_limit=message.retry_limit,
        default_action=default_action,
        rules=tuple(rules),
        updated=now(),
    )


def retry_policy_message(policy: RetryPolicy) -> submit_pb2.RetryPolicy:
    return submit_pb2.RetryPolicy(
        name=policy.name,
        retry_limit=policy.retry_limit,
        default_action=_ACTION_ENUMS[policy.default_action],
        rules=[
            submit_pb2.RetryRule(
                action=_ACTION_ENUMS[r.action], on_category=r.on_category, on_subcategory=r.on_subcategory
            )
            for r in policy.rules
        ],
    )


class RetryPolicyService(submit_pb2_grpc.RetryPolicyServiceServicer):
    def __init__(self, view: JobView, writer: LogWriter) -> None:
        self._view = view
        self._writer = writer

    async def _find(self, name: str, context) -> RetryPolicy | None:
        if not name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name: a retry policy name is required")
        return await self._view.find_retry_policy(name)

    async def _write(self, policy: RetryPolicy) -> None:
        await self._writer.retry_policy(policy)
        self._view.apply_definition(policy)  # read-your-writes for this API instance

    async def _validated(self, request, context) -> RetryPolicy:
        try:
            return retry_policy(request)
        except ValidationError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def CreateRetryPolicy(self, request, context):  # noqa: N802 - gRPC method names
        policy = await self._validated(request, context)
        if await self._find(policy.name, context) is not None:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS, f"retry policy {policy.name!r} already exists"
            )
        await self._write(policy)
        return empty_pb2.Empty()

    async def UpdateRetryPolicy(self, request, context):  # noqa: N802
        policy = await self._validated(request, context)
        if await self._find(policy.name, context) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"retry policy {policy.name!r} does not exist")
        await self._write(policy)
        return empty_pb2.Empty()

    async def DeleteRetryPolicy(self, request, context):  # noqa: N802
        if await self._find(request.name, context) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"retry policy {request.name!r} does not exist")
        users = sorted(q.name for q in self._view.queues.values() if request.name in q.retry_policies)
        if users:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"retry policy {request.name!r} is used by queues {', '.join(users)}; detach it first",
            )
        await self._write(RetryPolicy(name=request.name, deleted=True, updated=now()))
        return empty_pb2.Empty()

    async def GetRetryPolicy(self, request, context):  # noqa: N802
        policy = await self._find(request.name, context)
        if policy is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"retry policy {request.name!r} does not exist")
        return retry_policy_message(policy)

    async def GetRetryPolicies(self, request, context):  # noqa: N802
        await self._view.catch_up()
        return submit_pb2.RetryPolicyList(
            retry_policies=[
                retry_policy_message(self._view.retry_policies[n]) for n in sorted(self._view.retry_policies)
            ]
        )
