"""The progress bar of a training run: tqdm's (a widget in Jupyter, text in a terminal), ended so that it shows
how the run ended.

    bar = progress_bar(total=200, initial=0, enabled=True, desc="simclr")
    ...  bar.update(k) as steps are done
    end_bar(bar)                                        # complete, even if stopped on purpose short of 200
    end_bar(bar, "interrupted at step 52 of 200")       # after an error or Ctrl-C: red in Jupyter

tqdm.notebook paints a bar closed short of its total red, as it would a crash; `end_bar` keeps red for runs
that really were interrupted.
"""

from __future__ import annotations


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
    """A tqdm bar counting steps from `initial` to `total` (a disabled one that shows nothing unless `enabled`)."""
    from tqdm.auto import tqdm  # lazy: the notebook widget or the terminal bar, chosen at call time

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="step")


def end_bar(bar, interruption: str | None = None) -> None:
    """Close a tqdm bar so that it shows how the run ended.

    interruption: None for a run that ended as planned or stopped on purpose (`stop_after`): the bar ends
    complete, its total cut to the steps done. Else what to add to the postfix ("interrupted at step 7 of 12"):
    the bar ends red, even after an error that came after its last update (at the final evaluation, say).
    """
    if getattr(bar, "disable", False):
        return bar.close()
    widget = getattr(getattr(bar, "container", None), "children", ())  # tqdm.notebook: (label, bar, numbers)
    if interruption is not None:
        bar.set_postfix_str(", ".join(filter(None, [bar.postfix, interruption])), refresh=False)
        if len(widget) == 3:
            widget[1].bar_style = "danger"  # kept by tqdm.notebook's close(), which paints a full bar green
    elif bar.total and bar.n < bar.total:
        bar.total = bar.n
        if len(widget) == 3:
            widget[1].max = bar.n  # the widget keeps its own copy of the total
    bar.close()


__all__ = ["progress_bar", "end_bar"]
