"""Headless stand-ins for IPython.display and ipywidgets, used ONLY by the notebook smoke run of gpu_check.py.

    from benchmarks import headless
    used = headless.install(force=False)   # before the notebook's code runs; returns what was stood in for

The GPU machines the check runs on are started bare: no IPython, no ipywidgets. The course's explorers
build ipywidgets controls and display a figure through IPython.display; without stand-ins the notebooks
would stop at their first explorer, and what the explorers compute (a t-SNE on the GPU, say) would go
unchecked. These stand-ins hold each control's state (`value`, options, description, ...) and fire
`observe` callbacks when `.value` changes, as traitlets does (not when it is set to the value it has,
clamped to a slider's range); `display` draws what it is given, into nothing. They check that the
explorers' computation runs, not that anything looks right in a browser: the real widgets are tested by
tests/test_widgets.py (headless, with ipywidgets) and tests/test_browser.py (in JupyterLab).
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import sys
import types

_IDS = itertools.count()


# ----------------------------------------------------------------------------- IPython.display

class DisplayHandle:
    """What display(..., display_id=True) returns: update() draws the new object in place."""

    def update(self, obj, **kwargs) -> None:
        display(obj)


def _render(obj) -> None:
    """Draw obj as Jupyter would, into nothing: an explorer draws its figure, a matplotlib figure renders."""
    if hasattr(obj, "_ipython_display_"):
        obj._ipython_display_()
    elif hasattr(obj, "savefig"):
        obj.savefig(io.BytesIO(), format="png")


def display(*objs, display_id=None, raw=False, **kwargs):
    for obj in objs:
        if not raw:
            _render(obj)
    return DisplayHandle() if display_id else None


def clear_output(wait: bool = False) -> None:
    """Nothing is shown, so there is nothing to clear."""


class _Displayable:
    """Image, Markdown, HTML, Latex: they keep what they were given."""

    def __init__(self, data=None, **kwargs):
        self.data, self.metadata = data, kwargs


class Image(_Displayable):
    pass


class Markdown(_Displayable):
    pass


class DisplayHTML(_Displayable):
    """IPython.display.HTML (installed under that name; ipywidgets' HTML below is a control)."""


class Latex(_Displayable):
    pass


# ----------------------------------------------------------------------------- ipywidgets

class Widget:
    """A control's state; observers run when `value` changes (after validation), with traitlets' change dict."""

    DEFAULTS: dict = {}

    def __init__(self, value=None, **kwargs):
        object.__setattr__(self, "_observers", [])
        object.__setattr__(self, "model_id", f"headless-{next(_IDS)}")
        self.__dict__.update({"description": "", **self.DEFAULTS, **kwargs})
        start = self.DEFAULTS.get("value") if value is None else value
        self.__dict__["value"] = self._validate(start) if start is not None else None

    def observe(self, handler, names=None) -> None:
        self._observers.append((handler, [names] if isinstance(names, str) else names))

    def __setattr__(self, name, new) -> None:
        if name != "value":
            return object.__setattr__(self, name, new)
        old, new = self.__dict__.get("value"), self._validate(new)
        self.__dict__["value"] = new
        if new != old:
            change = {"name": "value", "old": old, "new": new, "owner": self, "type": "change"}
            for handler, names in list(self._observers):
                if names is None or "value" in names:
                    handler(change)

    def _validate(self, value):
        return value

    def _repr_mimebundle_(self, **kwargs) -> dict:
        view = {"version_major": 2, "version_minor": 0, "model_id": self.model_id}
        return {"text/plain": f"{type(self).__name__}(value={self.value!r})",
                "application/vnd.jupyter.widget-view+json": view}


class _Bounded(Widget):
    """A value clamped to [min, max] and cast, as ipywidgets' bounded numbers do."""

    CAST = float

    def _validate(self, value):
        return min(max(self.CAST(value), self.min), self.max)


class IntSlider(_Bounded):
    DEFAULTS, CAST = {"value": 0, "min": 0, "max": 100, "step": 1}, int


class BoundedIntText(IntSlider):
    pass


class FloatSlider(_Bounded):
    DEFAULTS = {"value": 0.0, "min": 0.0, "max": 10.0, "step": 0.1}


class FloatLogSlider(Widget):
    """min and max are exponents of `base`; the value is clamped to [base**min, base**max]."""

    DEFAULTS = {"value": 1.0, "base": 10.0, "min": 0.0, "max": 4.0, "step": 0.1}

    def _validate(self, value):
        return min(max(float(value), self.base ** self.min), self.base ** self.max)


class Checkbox(Widget):
    DEFAULTS = {"value": False, "indent": True}

    def _validate(self, value):
        return bool(value)


class Text(Widget):
    DEFAULTS = {"value": ""}


class HTML(Text):
    pass


class Dropdown(Widget):
    """options: values, or (label, value) pairs; the value must be one of them (the first by default)."""

    def __init__(self, options=(), value=None, **kwargs):
        values = [o[1] if isinstance(o, tuple) else o for o in options]
        self.__dict__["_values"] = values
        super().__init__(values[0] if value is None and values else value, options=list(options), **kwargs)

    def _validate(self, value):
        if value not in self._values:
            raise ValueError(f"Dropdown {self.description!r}: {value!r} is not one of its options {self._values}")
        return value


class Button(Widget):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._clicks = []

    def on_click(self, callback) -> None:
        self._clicks.append(callback)

    def click(self) -> None:
        for callback in self._clicks:
            callback(self)


class Output(Widget):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.outputs = ()

    def append_display_data(self, obj) -> None:
        self.outputs = (*self.outputs, obj)

    def clear_output(self, wait: bool = False) -> None:
        self.outputs = ()


class Box(Widget):
    def __init__(self, children=(), **kwargs):
        super().__init__(**kwargs)
        self.children = tuple(children)


class HBox(Box):
    pass


class VBox(Box):
    pass


# ----------------------------------------------------------------------------- installing them

WIDGETS = (Widget, IntSlider, BoundedIntText, FloatSlider, FloatLogSlider, Checkbox, Text, HTML, Dropdown, Button,
           Output, Box, HBox, VBox)


def _module(name: str, **members) -> types.ModuleType:
    module = types.ModuleType(name, f"Headless stand-in for {name} (benchmarks/headless.py).")
    module.__dict__.update(members)
    return module


def _ipython_modules() -> dict[str, types.ModuleType]:
    shown = {"display": display, "clear_output": clear_output, "DisplayHandle": DisplayHandle, "Image": Image,
             "Markdown": Markdown, "HTML": DisplayHTML, "Latex": Latex}
    ipython_display = _module("IPython.display", **shown)
    # get_ipython() is None, as in a plain Python process: code that looks for a notebook shell finds none.
    # version_info: matplotlib reads it wherever IPython is imported; from 8.24 on it needs no fix-up of matplotlib's.
    return {"IPython": _module("IPython", display=ipython_display, get_ipython=lambda: None,
                               version_info=(9, 0, 0, "")),
            "IPython.display": ipython_display}


def install(force: bool = False) -> list[str]:
    """Put the stand-ins in sys.modules where the real packages are missing (all of them with force=True).

    Real ipywidgets needs the real IPython, so with IPython stood in for, ipywidgets is too. Returns the
    names stood in for, for the record of the run.
    """
    used = []
    if force or importlib.util.find_spec("IPython") is None:
        sys.modules.update(_ipython_modules())
        used.append("IPython")
    if used or importlib.util.find_spec("ipywidgets") is None:
        sys.modules["ipywidgets"] = _module("ipywidgets", **{w.__name__: w for w in WIDGETS})
        used.append("ipywidgets")
    return used


__all__ = ["WIDGETS", "display", "install"] + [w.__name__ for w in WIDGETS]
