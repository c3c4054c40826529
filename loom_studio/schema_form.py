"""A form generated from a payload's JSON schema, to publish a test event.

An object schema gets one field per property, by its type: a text box for ``string``, a
spin box for ``integer`` and ``number``, a checkbox for ``boolean``, and JSON text for the
rest (objects, arrays, several types). Any other schema (a number, a list...) gets one
JSON field for the whole payload. The fields start from an example payload (the topic's
last event) when there is one.

>>> form = SchemaForm({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": 3})
>>> form.payload()
{'n': 3}
"""

from __future__ import annotations

import json
from typing import Any

import panel as pn

__all__ = ["SchemaForm"]

_WIDTH = 300


class SchemaForm:
    """The fields of one schema; :meth:`payload` reads them back as a payload.

    Args:
        schema: a JSON schema (genson's inference, or any).
        example: values to start from.
    """

    def __init__(self, schema: dict[str, Any], example: Any = None):
        self.schema = schema
        properties = schema.get("properties") if schema.get("type") == "object" else None
        self.whole = properties is None  # one JSON field for the whole payload
        self.fields: dict[str, Any] = {}
        if self.whole:
            self.fields[""] = _json_field("payload (JSON)", example)
        else:
            given = example if isinstance(example, dict) else {}
            required = set(schema.get("required") or [])
            for name, spec in properties.items():
                label = name if name in required else f"{name} (optional)"
                self.fields[name] = _field(label, spec, given.get(name))
        self.panel = pn.Column(*self.fields.values(), margin=0)

    def payload(self) -> Any:
        """The payload the fields say.

        Raises:
            ValueError: a JSON field does not hold JSON (the message names it).
        """
        if self.whole:
            return _read(self.fields[""])
        payload = {}
        for name, widget in self.fields.items():
            value = _read(widget)
            if value is not None or name in set(self.schema.get("required") or []):
                payload[name] = value
        return payload


def _field(label: str, spec: dict[str, Any], value: Any) -> Any:
    kind = spec.get("type")
    if kind == "string":
        return pn.widgets.TextInput(label=label, value=str(value or ""), width=_WIDTH)
    if kind == "integer" and not isinstance(value, bool):
        return pn.widgets.IntInput(label=label, value=int(value or 0), width=_WIDTH)
    if kind == "number" and not isinstance(value, bool):
        return pn.widgets.FloatInput(label=label, value=float(value or 0.0), width=_WIDTH)
    if kind == "boolean":
        return pn.widgets.Checkbox(label=label, value=bool(value))
    return _json_field(label, value)


def _json_field(label: str, value: Any) -> Any:
    text = json.dumps(value, default=repr) if value is not None else ""
    widget = pn.widgets.TextAreaInput(label=label, value=text, width=_WIDTH, height=70)
    widget.tags = ["json"]
    return widget


def _read(widget: Any) -> Any:
    if "json" not in widget.tags:
        return widget.value
    text = (widget.value or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{widget.label}: not JSON ({exc.msg}, column {exc.colno})") from None
