"""The browsing model: what a browser or comparison window shows and does, without Qt.

- ``Browser`` (browser.py): one open store (hook, neuron, page, tables, filter, sort, labels, bookmarks,
  history, try-your-text), emitting plain events.
- ``CompareBrowser`` (compare.py): two Browsers and the population comparison of their stores.
- ``Events`` (events.py): the callback lists views subscribe to.
- ``InlineRunner`` / ``Runner`` (runner.py): where the work runs; the app passes its Qt thread pool.

What they use, a module per concern: ``cancellation`` (a newer request cancels the older one),
``navigation`` (neuron refs, history, bookmarks, stepping), ``filtering`` (the table's columns, the
filter language, the context search), ``pages`` (a neuron page: merged snippets, shading scale, the
page cache), ``status_lines`` (a store's title, status and problems). The population comparison of
two stores is ``neurobrowse.compare``.

The Qt widgets in ``neurobrowse.qt`` are views over these, connected by ``neurobrowse.qt.bridge``.
"""

from neurobrowse.browsing.browser import EVENTS, Browser
from neurobrowse.browsing.compare import CompareBrowser
from neurobrowse.browsing.events import Event, Events
from neurobrowse.browsing.runner import InlineRunner, Runner

__all__ = ["Browser", "CompareBrowser", "Event", "Events", "EVENTS", "InlineRunner", "Runner"]
