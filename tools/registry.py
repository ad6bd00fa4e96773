"""The tool registry: plain typed functions, their JSON schema derived.

A tool is a function with type hints and a docstring (Google style: a summary, then
`Args:` lines). `@tool(connector=..., effect=...)` marks it; `Registry` collects
marked functions and derives each input schema with pydantic, which also validates
the model's arguments before the function runs. A parameter annotated
`ToolContext` is filled in by the runner and never shown to the model.

No tool checks its own permission: the gate (agent.gate) decides every call.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, get_args, get_origin, get_type_hints

import docstring_parser
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic import Field as PField

if TYPE_CHECKING:
    from store.config import Settings
    from store.db import Store


class Effect(str, Enum):
    READ = "read"  # reads local data or a connector
    WRITE = "write"  # writes inside Dispatch's own workspace/outbox
    SEND = "send"  # leaves the desktop to someone other than the owner
    CONTROL = "control"  # drives the mouse, keyboard or screen


class ToolError(Exception):
    """An expected failure; its message goes to the model (and owner) as is."""


class ToolOutcomeUnknown(ToolError):
    """A send that may or may not have gone out (the server dropped mid-send).
    The approval ends `unknown` and the owner is asked to check; never retried."""


class Hidden:
    """Marks a parameter the model never sees or sets: `message_id: Annotated[str, Hidden] = ""`.
    A tool's `prepare` hook fills it (e.g. a Message-ID fixed when the draft is made)."""


# Delivers a file to the owner's own chat (the reply itself, not a `send`).
Deliver = Callable[[Path, str], Awaitable[str]]


class Blocks(list):  # type: ignore[type-arg]
    """A tool result made of content blocks (text and images, e.g. a screenshot) rather
    than one string: returned as is, so the model sees the image."""


@dataclass(frozen=True)
class NativeSpec:
    """A provider-defined tool such as Anthropic's computer tool: the model is offered
    `definition` (e.g. {"type": "computer_20251124", "name": "computer", ...}) instead
    of a JSON schema, and the request carries the beta header(s) in `betas`. The
    function behind it still runs through the gate like any other tool."""

    definition: dict[str, Any]
    betas: tuple[str, ...] = ()


@dataclass
class ToolContext:
    """What a running tool may know about its surroundings."""

    settings: "Settings"
    store: "Store"
    task_id: int | None = None
    thread_id: int | None = None
    origin: str = ""
    deliver: Deliver | None = None
    # Whether the gate still lets this tool run, asked again at any moment (a long action
    # checks it between steps, so the owner turning a connector off stops it at once).
    allowed: Callable[[], bool] | None = None
    # The schedules of the running Dispatch (tools.schedule.Schedules), injected by the core.
    schedules: Any = None
    # Set by the runner for a task: `offer(names)` makes deferred tools (plugin tools found
    # by a tool search) offered to the model for the rest of the task and returns the names
    # the gate lets through; `policy_of(tool)` is the gate's auto|ask|off for a tool now.
    offer: Callable[[list[str]], list[str]] | None = None
    policy_of: Callable[["Tool"], str] | None = None
    # Set when the call runs an approved draft: {"id": N, "by": "telegram:…", "at": ISO time}.
    # Tools that persist (schedules, memory notes) record it as where the thing came from.
    approval: dict[str, Any] | None = None


@dataclass
class Tool:
    name: str
    fn: Callable[..., Any]
    connector: str
    effect: Effect | str
    description: str
    args_model: type[BaseModel]
    ctx_param: str | None = None
    # For approval cards: turns the exact arguments into what the owner reads.
    preview: Callable[[dict[str, Any]], str] | None = None
    # The argument an owner's "Edit" replaces (the body of a mail, the text of a post).
    edit_field: str | None = None
    # Runs on the model's arguments before the gate's draft or run: checks what can be
    # checked before the owner is asked, fixes what must not change between draft and
    # send (fills Hidden parameters). Returns the arguments; raises ToolError to refuse.
    prepare: Callable[[ToolContext, dict[str, Any]], Any] | None = None
    hidden: frozenset[str] = frozenset()
    # Whether the connector is set up (mail needs an account, Slack a token). A tool that
    # is not ready is not offered to the model: it could only fail, and costs tokens.
    ready: Callable[["Settings"], bool] | None = None
    input_schema: dict[str, Any] = field(default_factory=dict)
    # A provider-defined tool (see NativeSpec): its definition, made for these settings.
    native: Callable[["Settings"], NativeSpec] | None = None
    # Not offered until a tool search (ToolContext.offer) loads it for the task: keeps
    # plugin schemas out of the prompt until the model asks for them.
    deferred: bool = False
    # The least strict policy this tool may have, whatever the owner set for its connector
    # (a plugin that declares a tool destructive makes it at least "ask"; never looser).
    min_policy: str | None = None
    # Validates the arguments when there is no Python signature (a tool built from a JSON
    # schema, see dynamic_tool): returns them as the tool will get them, or raises ToolError.
    validator: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Its results carry text written by someone other than the owner (files, mail, Slack,
    # a plugin's answer, the screen): a task that ran it is *tainted* (see agent.gate).
    untrusted: bool = False
    # It creates or changes standing authority (a schedule, a memory note): in a tainted
    # task the gate makes it a draft for the owner, whatever the policy says.
    persists: bool = False

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}

    def api_definition(self, settings: "Settings") -> tuple[dict[str, Any], tuple[str, ...]]:
        """What the request's `tools` list carries for this tool, and the betas it needs."""
        if self.native is None:
            return self.schema(), ()
        spec = self.native(settings)
        return spec.definition, spec.betas

    async def prepared(self, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        """The model's arguments, validated and prepared: what a draft stores and a run uses."""
        forged = self.hidden & set(args)
        if forged:
            raise ToolError(f"Invalid arguments for {self.name}: {', '.join(sorted(forged))} cannot be set")
        args = self.validate(args)
        if self.prepare is not None:
            result = self.prepare(ctx, args)
            args = await result if inspect.isawaitable(result) else result
        return args

    def validate(self, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments as the function will get them; ToolError with a readable reason if bad."""
        if self.validator is not None:
            return self.validator(args)
        try:
            model = self.args_model.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolError(f"Invalid arguments for {self.name}: {problems}") from None
        return model.model_dump(exclude_unset=False)

    async def call(self, ctx: ToolContext, args: dict[str, Any]) -> str | Blocks:
        kwargs = self.validate(args)
        if self.ctx_param:
            kwargs[self.ctx_param] = ctx
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn(**kwargs)
        else:
            # Sync tools (file walks, document parsing) must not stall the event loop.
            result = await asyncio.to_thread(self.fn, **kwargs)
        if isinstance(result, (str, Blocks)):
            return result
        return json.dumps(result, ensure_ascii=False, default=str)

    def render_preview(self, args: dict[str, Any]) -> str:
        if self.preview is not None:
            return self.preview(args)
        lines = [self.name]
        for key, value in args.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            lines.append(f"{key}: {text}")
        return "\n".join(lines)


def tool(
    *,
    connector: str,
    effect: Effect | str,
    name: str | None = None,
    preview: Callable[[dict[str, Any]], str] | None = None,
    edit_field: str | None = None,
    prepare: Callable[[ToolContext, dict[str, Any]], Any] | None = None,
    native: Callable[["Settings"], NativeSpec] | None = None,
    ready: Callable[["Settings"], bool] | None = None,
    untrusted: bool = False,
    persists: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function as a tool. The function itself is returned unchanged. `ready`
    narrows the module's readiness for this one tool (slack_search needs a user token
    where the other Slack tools need only the bot's): it is offered only when both hold."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__dispatch_tool__ = dict(  # type: ignore[attr-defined]
            connector=connector, effect=effect, name=name, preview=preview, edit_field=edit_field,
            prepare=prepare, native=native, ready=ready, untrusted=untrusted, persists=persists,
        )
        return fn

    return mark


def build_tool(fn: Callable[..., Any], **meta: Any) -> Tool:
    meta = {**getattr(fn, "__dispatch_tool__", {}), **meta}
    raw_doc = inspect.getdoc(fn) or ""
    param_docs = {p.arg_name: (p.description or "") for p in docstring_parser.parse(raw_doc).params}
    description = _description(raw_doc)
    if not description:
        raise ValueError(f"tool {fn.__name__} needs a docstring: the model reads it")

    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    ctx_param = None
    hidden = set()
    for pname, param in inspect.signature(fn).parameters.items():
        annotation = hints.get(pname, Any)
        if annotation is ToolContext:
            ctx_param = pname
            continue
        if get_origin(annotation) is Annotated and Hidden in get_args(annotation)[1:]:
            hidden.add(pname)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, PField(default, description=param_docs.get(pname) or None))
    name = meta.get("name") or fn.__name__
    args_model = create_model(  # type: ignore[call-overload]
        f"{name}_args", __config__=ConfigDict(extra="forbid"), **fields
    )
    schema = _clean(args_model.model_json_schema())
    for pname in hidden:  # the model neither sees nor sets these
        schema.get("properties", {}).pop(pname, None)
        if pname in schema.get("required", []):
            raise ValueError(f"hidden parameter {pname} of {name} needs a default")
    return Tool(
        name=name,
        fn=fn,
        connector=meta["connector"],
        effect=meta["effect"],
        description=description,
        args_model=args_model,
        ctx_param=ctx_param,
        preview=meta.get("preview"),
        edit_field=meta.get("edit_field"),
        prepare=meta.get("prepare"),
        hidden=frozenset(hidden),
        input_schema=schema,
        native=meta.get("native"),
        ready=meta.get("ready"),
        untrusted=bool(meta.get("untrusted")),
        persists=bool(meta.get("persists")),
    )


class _AnyArgs(BaseModel):
    model_config = ConfigDict(extra="allow")


def dynamic_tool(
    *,
    name: str,
    description: str,
    input_schema: dict[str, Any],
    run: Callable[..., Awaitable[Any]],
    connector: str,
    effect: Effect | str,
    **extra: Any,
) -> Tool:
    """A tool that is not a Python function: a JSON schema (from a plugin) and an async
    `run(**arguments)`. Arguments are checked against the schema with jsonschema, which
    (~6 MB) is imported and the checker built on the first call, not at start-up."""
    schema = input_schema if input_schema.get("type") == "object" else {"type": "object", "properties": {}}
    checkers: list[Any] = []  # [checker or None] once built

    def checker_of() -> Any:
        if not checkers:
            import jsonschema

            checker_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            try:
                checker_cls.check_schema(schema)
                checkers.append(checker_cls(schema))
            except jsonschema.SchemaError:  # a broken schema from a third party: the server checks instead
                checkers.append(None)
        return checkers[0]

    def validate(args: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(args, dict):
            raise ToolError(f"Invalid arguments for {name}: expected an object")
        checker = checker_of()
        if checker is not None:
            problems = [
                f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}"
                for e in sorted(checker.iter_errors(args), key=lambda e: list(e.absolute_path))[:5]
            ]
            if problems:
                raise ToolError(f"Invalid arguments for {name}: {'; '.join(problems)}")
        return dict(args)

    # What the model is shown: no titles or $schema (tokens that tell it nothing); checked against the original.
    shown = {k: v for k, v in _clean(schema).items() if k != "$schema"}
    return Tool(name=name, fn=run, connector=connector, effect=effect, description=description,
                args_model=_AnyArgs, input_schema=shown, validator=validate, **extra)


def _description(doc: str) -> str:
    """The docstring's prose before its Args: section, each paragraph on one line."""
    prose = re.split(r"^\s*(?:Args|Arguments|Parameters|Returns|Raises):", doc, maxsplit=1, flags=re.M)[0]
    paragraphs = [" ".join(p.split()) for p in prose.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's titles: they cost tokens and tell the model nothing."""
    if isinstance(schema, dict):
        return {k: _clean(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]  # type: ignore[return-value]
    return schema


def _both(first: Callable[["Settings"], bool] | None,
          second: Callable[["Settings"], bool] | None) -> Callable[["Settings"], bool] | None:
    """One readiness check out of a module's and a tool's (either may be missing)."""
    if first is None or second is None:
        return first or second
    return lambda settings: first(settings) and second(settings)


class Registry:
    """Every tool Dispatch knows, by name. Schemas come out in a stable (name) order
    so the tools block of the prompt is byte-identical between calls and caches."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        # Asked for a name the registry does not hold (a plugin tool named in a draft made
        # before a restart, before its server has been started again).
        self._resolvers: list[Callable[[str], Tool | None]] = []

    def add(self, fn: Callable[..., Any], **meta: Any) -> Tool:
        t = build_tool(fn, **meta)
        if t.name in self._tools:
            raise ValueError(f"two tools are called {t.name}")
        self._tools[t.name] = t
        return t

    def add_module(self, module: Any) -> None:
        """Every tool a module defines. A module-level `ready(settings) -> bool` says
        whether its connector is set up; its tools are offered only when it is (and
        when the tool's own `ready`, if it has one, holds too)."""
        module_ready = getattr(module, "ready", None)
        for _, fn in inspect.getmembers(module, callable):
            if hasattr(fn, "__dispatch_tool__") and fn.__module__ == module.__name__:
                t = self.add(fn)
                t.ready = _both(module_ready, t.ready)

    def add_tool(self, t: Tool, *, replace: bool = False) -> Tool:
        """A tool built elsewhere (dynamic_tool). `replace` swaps a tool of the same name
        (a plugin that re-lists its tools after a restart)."""
        if t.name in self._tools and not replace:
            raise ValueError(f"two tools are called {t.name}")
        self._tools[t.name] = t
        return t

    def remove(self, name: str) -> None:
        self._tools.pop(name, None)

    def add_resolver(self, resolver: Callable[[str], Tool | None]) -> None:
        self._resolvers.append(resolver)

    def get(self, name: str) -> Tool | None:
        found = self._tools.get(name)
        if found is None:
            for resolver in self._resolvers:
                found = resolver(name)
                if found is not None:
                    break
        return found

    def all(self) -> list[Tool]:
        return [self._tools[k] for k in sorted(self._tools)]

    def __contains__(self, name: str) -> bool:
        return name in self._tools
