"""When each analysis runs, off the protocol's thread, and what is published when it is done.

After every change to a document:

1. its text is parsed at once (tens of milliseconds): a syntax error is published immediately, and
   one just fixed is cleared immediately (skipped when the check itself runs at once, delay 0);
2. after `check_delay` seconds without another change, `kdlang check --no-shapes` runs on it;
3. after `shape_delay` seconds without another change, or at once when it is saved or opened, the
   full check runs, shape pass included (it builds the models with torch: seconds on a big recipe).

The parse and the check take turns on one worker thread, the shape pass has its own, so a running
shape pass never holds up the next check; requests (hover, completion) are answered meanwhile. A
text that does not parse is not checked further (the check would find the same syntax error).

A change cancels the steps still waiting; a step already running finishes, and its result, though
never shown for a newer text, keeps the symbols the navigation features read. Documents that `use`
the changed one are checked again with it. Nothing a check raises stops the server: it is logged.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import attrs

from kdlang.lsp.documents import Document, Documents, Parsed, Result, check_document, parse_document

SYNTAX, CHECK, SHAPES = "syntax", "check", "shapes"


@attrs.define
class Settings:
    """The server's timing; set from the command line or the client's `initializationOptions`."""

    check_delay: float = 0.3  # seconds of quiet before the check without shapes
    shape_delay: float = 1.5  # seconds of quiet before the shape pass
    shapes: bool = True  # run the shape pass at all (it needs torch and builds every model)

    def update(self, options: object) -> None:
        """Take `checkDelay`, `shapeDelay` and `shapes` from the client's options, ignoring the rest."""
        if not isinstance(options, dict):
            return
        for key, name in (("checkDelay", "check_delay"), ("shapeDelay", "shape_delay")):
            value = options.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 60:
                setattr(self, name, float(value))
        if isinstance(options.get("shapes"), bool):
            self.shapes = options["shapes"]


class Checker:
    """Runs the three steps for each document and hands every fresh result to `publish`."""

    def __init__(self, documents: Documents, settings: Settings, publish: Callable[[Document], None],
                 log: Callable[[str], None]) -> None:
        self.documents = documents
        self.settings = settings
        self.publish = publish
        self.log = log
        quick = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdlang-check")  # parse, then check: in turn
        self.pools = {SYNTAX: quick, CHECK: quick,
                      SHAPES: ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdlang-shapes")}

    def opened(self, document: Document) -> None:
        self._all_steps(document, check_delay=0.0, shape_delay=0.0)

    def changed(self, document: Document) -> None:
        self._all_steps(document, check_delay=self.settings.check_delay, shape_delay=self.settings.shape_delay)
        for user in self.documents.users_of(document):
            self._schedule(user, CHECK, self.settings.check_delay)
            self._schedule(user, SHAPES, self.settings.shape_delay)

    def saved(self, document: Document) -> None:
        self._schedule(document, SHAPES, 0.0)

    def closed(self, document: Document) -> None:
        for task in document.tasks.values():
            task.cancel()

    def shutdown(self) -> None:
        for pool in set(self.pools.values()):
            pool.shutdown(wait=False, cancel_futures=True)

    async def settled(self, document: Document, step: str = CHECK, timeout: float = 10.0) -> None:
        """Wait (up to `timeout` seconds) until `step` has nothing pending for the document's text."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            task = document.tasks.get(step)
            if task is None or task.done():
                return
            await asyncio.wait({task}, timeout=deadline - loop.time())

    # ---- the steps ----------------------------------------------------------------------------
    def _all_steps(self, document: Document, *, check_delay: float, shape_delay: float) -> None:
        if check_delay > 0:  # a check that starts at once reports a syntax error as soon as a parse would
            self._schedule(document, SYNTAX, 0.0)
        self._schedule(document, CHECK, check_delay)
        if self.settings.shapes:
            self._schedule(document, SHAPES, shape_delay)

    def _schedule(self, document: Document, step: str, delay: float) -> None:
        waiting = document.tasks.get(step)
        if waiting is not None and not waiting.done() and step not in document.running:
            waiting.cancel()  # one already running finishes: its symbols serve until the next check
        document.tasks[step] = asyncio.get_running_loop().create_task(self._run(document, step, delay))

    async def _run(self, document: Document, step: str, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        parsed = document.current(document.parsed)
        if step != SYNTAX and parsed is not None and parsed.problem is not None:
            return  # the text does not parse: a check would only say so again
        version, text, file = document.version, document.text, document.file
        texts = self.documents.open_texts()
        on_disk = document.path is not None
        document.running.add(step)
        try:
            if step == SYNTAX:
                result: Parsed | Result = await self._in_pool(step, functools.partial(parse_document, text, file, version))
            else:
                checked = await self._in_pool(step, functools.partial(
                    check_document, file, text, texts, shapes=step == SHAPES, on_disk=on_disk))
                result = Result(version, checked)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in kdlang: logged, and the server goes on
            self.log(f"kdlang: the {step} step failed on {document.uri}:\n{traceback.format_exc()}")
            return
        finally:
            document.running.discard(step)
        if self.documents.get(document.uri) is not document:
            return  # closed meanwhile
        if step == SYNTAX:
            if document.version == version and isinstance(result, Parsed):
                document.parsed = result
        else:
            slot = "checked" if step == CHECK else "shaped"
            stored = getattr(document, slot)
            if stored is None or (stored.version or 0) <= (version or 0):  # an older text's symbols still help
                setattr(document, slot, result)
        if document.version == version:  # else a newer step is on its way: show nothing stale
            self.publish(document)

    async def _in_pool(self, step: str, work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pools[step], work)
