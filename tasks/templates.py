"""Template messages as the Cloud API takes them: body, header and button components, built per campaign.

A campaign's `template_plan` (stored with it) says how its header and button parameters are filled: a
constant value for the whole campaign, or a recipient column. Recipients' stored parameters then hold the
body values first and the plan's columns after them (positional templates: a list, body values then one
value per plan column; named templates: a dict, body names and the plan's column names as keys).

`PayloadBuilder` turns that into one message body per recipient. The components that do not depend on
the recipient are built once per campaign, so the per-message work stays a few dict and list literals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks import jsoncodec
from tasks.whatsapp import template_payload

# The media a header can carry by link, as the Cloud API names the parameter type.
MEDIA_HEADER_TYPES = ("image", "video", "document")
HEADER_TYPES = ("text", *MEDIA_HEADER_TYPES)
BUTTON_SUB_TYPES = ("url", "quick_reply")

# A plain template's body up to the recipient's number (`PayloadBuilder.body`).
_BODY_HEAD = '{"messaging_product":"whatsapp","recipient_type":"individual","to":'

Component = dict[str, Any]
RowComponent = Callable[[list[str]], Component]


def header_component(kind: str, value: str, filename: str | None = None, name: str | None = None) -> Component:
    """A header component: a text parameter, or an image/video/document by link (a document may be named)."""
    if kind == "text":
        parameter: dict[str, Any] = {"type": "text", "text": value}
        if name:
            parameter["parameter_name"] = name
    else:
        media: dict[str, str] = {"link": value}
        if kind == "document" and filename:
            media["filename"] = filename
        parameter = {"type": kind, kind: media}
    return {"type": "header", "parameters": [parameter]}


def button_component(sub_type: str, index: int, value: str) -> Component:
    """A button component: a URL button's suffix, or a quick-reply button's payload."""
    parameter = {"type": "text", "text": value} if sub_type == "url" else {"type": "payload", "payload": value}
    return {"type": "button", "sub_type": sub_type, "index": str(index), "parameters": [parameter]}


class PayloadBuilder:
    """Builds the JSON body of each template message of one campaign."""

    def __init__(self, template: str, language: str, plan: dict[str, Any] | None = None) -> None:
        """Prepare the parts every message of the campaign shares."""
        self.template = template
        self.language = {"code": language}
        plan = plan or {}
        self.columns: list[str] = list(plan.get("columns") or [])
        self.column_set = frozenset(self.columns)
        self.body_count: int = int(plan.get("body_count") or 0)
        # Components before the body (the header) and after it (buttons, by index): a dict when constant,
        # otherwise a function of the recipient's values of the plan's columns (a list, in column order).
        self.before: list[Component | RowComponent] = []
        self.after: list[Component | RowComponent] = []
        header = plan.get("header")
        if header:
            self.before.append(self._header(header))
        for button in sorted(plan.get("buttons") or [], key=lambda b: b["index"]):
            self.after.append(self._button(button))
        self.rich = bool(self.before or self.after or self.columns)
        # A plain template's body is written straight to bytes around these fixed parts (`body`).
        self._direct = not self.rich and type(template) is str and type(language) is str
        self._template = ""
        if self._direct:
            name, code = jsoncodec.string(template), jsoncodec.string(language)
            # The "template" object stays open: the components, if any, come before its closing brace.
            self._template = f',"type":"template","template":{{"name":{name},"language":{{"code":{code}}}'

    def _header(self, spec: dict[str, Any]) -> Component | RowComponent:
        """The header component, or how to build it from a recipient's values."""
        kind, column, name = spec["type"], spec.get("column"), spec.get("parameter_name")
        filename_column, filename, value = spec.get("filename_column"), spec.get("filename"), spec.get("value") or ""
        if column is None and filename_column is None:
            return header_component(kind, value, filename, name)
        at = self.columns.index(column) if column else None
        if filename_column is None and at is not None:
            # The usual case, a link or a text per row: one literal per message.
            if kind == "text":
                named = {"parameter_name": name} if name else {}
                return lambda v: {"type": "header", "parameters": [{"type": "text", "text": v[at], **named}]}
            shown = {"filename": filename} if kind == "document" and filename else {}
            return lambda v: {"type": "header", "parameters": [{"type": kind, kind: {"link": v[at], **shown}}]}
        name_at = self.columns.index(filename_column) if filename_column else None
        return lambda v: header_component(
            kind,
            v[at] if at is not None else value,
            (v[name_at] if name_at is not None else filename) or None,
            name,
        )

    def _button(self, spec: dict[str, Any]) -> Component | RowComponent:
        """A button component, or how to build it from a recipient's values."""
        sub_type, index, column = spec["sub_type"], spec["index"], spec.get("column")
        if column is None:
            return button_component(sub_type, index, spec["value"])
        at, position = self.columns.index(column), str(index)
        if sub_type == "url":
            return lambda v: {
                "type": "button",
                "sub_type": "url",
                "index": position,
                "parameters": [{"type": "text", "text": v[at]}],
            }
        return lambda v: {
            "type": "button",
            "sub_type": "quick_reply",
            "index": position,
            "parameters": [{"type": "payload", "payload": v[at]}],
        }

    def body(self, to: str, parameters: list | dict, callback_data: str | None = None) -> bytes:
        """The message body for one recipient, encoded as it is sent: the bytes of `payload`'s JSON.

        For a plain template (body parameters only, by far the usual campaign) the JSON is written directly:
        building the payload's dicts and encoding them was a few percent of a sending worker's CPU.
        """
        if not self._direct or type(to) is not str or (callback_data is not None and type(callback_data) is not str):
            return jsoncodec.dumps(self.payload(to, parameters, callback_data))
        if isinstance(parameters, dict):
            if any(type(k) is not str for k in parameters):
                return jsoncodec.dumps(self.payload(to, parameters, callback_data))
            params = ",".join(
                f'{{"type":"text","text":{jsoncodec.string(str(v))},"parameter_name":{jsoncodec.string(k)}}}'
                for k, v in parameters.items()
            )
        else:
            params = ",".join(f'{{"type":"text","text":{jsoncodec.string(str(v))}}}' for v in parameters)
        components = f',"components":[{{"type":"body","parameters":[{params}]}}]' if params else ""
        tail = f',"biz_opaque_callback_data":{jsoncodec.string(callback_data)}}}' if callback_data else "}"
        return f"{_BODY_HEAD}{jsoncodec.string(to)}{self._template}{components}}}{tail}".encode()

    def payload(self, to: str, parameters: list | dict, callback_data: str | None = None) -> dict:
        """The message body for one recipient."""
        if not self.rich:
            return template_payload(to, self.template, self.language["code"], parameters, callback_data)
        if isinstance(parameters, dict):
            values = [parameters.get(c, "") for c in self.columns]
            body = [
                {"type": "text", "text": str(v), "parameter_name": k}
                for k, v in parameters.items()
                if k not in self.column_set
            ]
        else:
            n = self.body_count
            values = parameters[n:]
            body = [{"type": "text", "text": str(v)} for v in parameters[:n]]
        components = [c if type(c) is dict else c(values) for c in self.before]  # type: ignore[operator]
        if body:
            components.append({"type": "body", "parameters": body})
        components += [c if type(c) is dict else c(values) for c in self.after]  # type: ignore[operator]
        template: dict[str, object] = {"name": self.template, "language": self.language}
        if components:
            template["components"] = components
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": template,
        }
        if callback_data:
            payload["biz_opaque_callback_data"] = callback_data
        return payload
